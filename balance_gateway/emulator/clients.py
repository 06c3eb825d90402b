"""Clients, persons, user links and contracts: CreateClient, CreatePerson, CreateUserClientAssociation, FindClient,
GetClientByIdBatch, GetClientPersons, GetClientContracts.

- `SERVICE_CLIENT_ID` (and `SERVICE_ID`) are accepted in CreateClient but ignored unless
  `options.honour_service_client_id`: a repeated CreateClient makes a duplicate client, as no source shows the
  real Balance keying clients by the service's id.
- Changing IS_AGENCY on an edit is silently ignored.
- Person types allowed by region: 225 (Russia) ur/ph, 149 (Belarus) byu/byp, 159 (Kazakhstan) kzu/kzp, others
  the non-resident yt/ytph. `ur` needs name, longname, phone, email, postcode, postaddress, legaladdress, inn and
  kpp; `ph` needs lname, fname, phone and email; else fault MISSING_MANDATORY_PERSON_FIELD.
- FindClient: Name matches a case-insensitive substring, Email and Login exactly (case-insensitive); every
  criterion given must match.
"""

from __future__ import annotations

from typing import Any

from balance_gateway.emulator.accounting import Accounting
from balance_gateway.emulator.records import DEFAULT_CURRENCY, Client, Contract, Person
from balance_gateway.emulator.values import (
    BalanceError,
    array,
    fmt_date,
    fmt_money,
    invalid,
    parse_date,
    parse_flag,
    parse_id,
    parse_int,
    parse_optional_id,
    parse_str,
    parse_uid,
    struct,
)

CLIENT_FIELDS = ("CLIENT_ID", "NAME", "EMAIL", "PHONE", "FAX", "URL", "CITY", "REGION_ID", "IS_AGENCY", "AGENCY_ID",
                 "CURRENCY", "MIGRATE_TO_CURRENCY", "CLIENT_TYPE_ID", "SERVICE_ID", "SERVICE_CLIENT_ID")  # fmt: skip
PERSON_TYPES = {225: ("ur", "ph"), 149: ("byu", "byp"), 159: ("kzu", "kzp")}
NON_RESIDENT_TYPES = ("yt", "ytph")
MANDATORY = {
    "ur": ("name", "longname", "phone", "email", "postcode", "postaddress", "legaladdress", "inn", "kpp"),
    "ph": ("lname", "fname", "phone", "email"),
    "byu": ("name", "phone", "email", "inn"),
    "kzu": ("name", "phone", "email", "inn"),
}
FIND_KEYS = ("ClientID", "Login", "PassportID", "Email", "Name", "Phone", "IsAgency", "AgencyID")


class Clients(Accounting):
    # ------------------------------------------------------------------------------------------ structs out
    def client_struct(self, client: Client) -> dict:
        return {
            "CLIENT_ID": client.client_id,
            "NAME": client.name,
            "EMAIL": client.email,
            "PHONE": client.phone,
            "FAX": client.fax,
            "URL": client.url,
            "CITY": client.city,
            "REGION_ID": client.region_id,
            "CLIENT_TYPE_ID": client.client_type_id,
            "IS_AGENCY": client.is_agency,
            "AGENCY_ID": client.agency_id,
            "SERVICE_DATA": {},
            "SINGLE_ACCOUNT_NUMBER": "",
        }

    def person_struct(self, person: Person) -> dict:
        data = {key.upper(): value for key, value in sorted(person.fields.items())}
        data.update(ID=person.person_id, CLIENT_ID=person.client_id, TYPE=person.type, HIDDEN=person.hidden)
        return data

    def contract_struct(self, contract: Contract, day: Any = None) -> dict:
        return {
            "ID": contract.contract_id,
            "CLIENT_ID": contract.client_id,
            "EXTERNAL_ID": contract.external_id,
            "PERSON_ID": contract.person_id,
            "IS_ACTIVE": int(contract.active_on(day or self.today())),
            "IS_SIGNED": contract.is_signed,
            "IS_SUSPENDED": contract.is_suspended,
            "PAYMENT_TYPE": contract.payment_type,
            "SERVICES": list(contract.services),
            "CURRENCY": contract.currency,
            "DT": fmt_date(contract.dt),
            "FINISH_DT": fmt_date(contract.finish_dt),
            "CONTRACT_TYPE": "GENERAL",
        }

    # --------------------------------------------------------------------------------------------- methods
    def create_client(self, uid: Any, params: Any) -> list:
        parse_uid(uid)
        p = struct(params, "CreateClient params", optional=CLIENT_FIELDS)
        texts = {key: parse_str(p[key], key, max_len=255) for key in ("NAME", "EMAIL", "PHONE", "FAX", "URL", "CITY")
                 if key in p}  # fmt: skip
        is_agency = parse_flag(p["IS_AGENCY"], "IS_AGENCY") if "IS_AGENCY" in p else 0
        region_id = parse_id(p["REGION_ID"], "REGION_ID") if p.get("REGION_ID") not in (None, "", 0, "0") else None
        client_type_id = parse_int(p["CLIENT_TYPE_ID"], "CLIENT_TYPE_ID") if "CLIENT_TYPE_ID" in p else None
        currency = None
        for key in ("CURRENCY", "MIGRATE_TO_CURRENCY"):
            if p.get(key):
                currency = parse_str(p[key], key).upper()
                if currency == "RUR":
                    currency = "RUB"
                if len(currency) != 3 or not currency.isalpha():
                    raise invalid(f"{key} must be a 3-letter code, got {p[key]!r}")
        agency_id = parse_optional_id(p.get("AGENCY_ID"), "AGENCY_ID") if "AGENCY_ID" in p else None
        service_key = ""
        if self.options.honour_service_client_id and p.get("SERVICE_CLIENT_ID") not in (None, ""):
            service_key = f"{p.get('SERVICE_ID', '')}:{p['SERVICE_CLIENT_ID']}"
        client_id = parse_optional_id(p.get("CLIENT_ID"), "CLIENT_ID")
        if agency_id:
            agency = self.client(agency_id, "AGENCY_ID")
            if not agency.is_agency:
                raise invalid(f"Client {agency_id} is not an agency")
        if client_id:
            client = self.client(client_id, "CLIENT_ID")
            if texts.get("NAME") == "":
                raise invalid("NAME cannot be cleared")
            for key, value in texts.items():
                setattr(client, key.lower(), value)
            if currency:
                client.currency = currency
            if region_id:
                client.region_id = region_id
            if client_type_id is not None:
                client.client_type_id = client_type_id
            if agency_id is not None:
                client.agency_id = agency_id
            return [0, "SUCCESS", client.client_id]  # IS_AGENCY: silently ignored on edit
        if not texts.get("NAME"):
            raise invalid("NAME is required to create a client")
        if service_key:
            for existing in self.clients.values():
                if existing.service_client_id == service_key:
                    return [0, "SUCCESS", existing.client_id]
        client = Client(
            client_id=self.next_id("client"),
            name=texts["NAME"],
            email=texts.get("EMAIL", ""),
            phone=texts.get("PHONE", ""),
            fax=texts.get("FAX", ""),
            url=texts.get("URL", ""),
            city=texts.get("CITY", ""),
            region_id=region_id or 225,
            client_type_id=client_type_id or 0,
            is_agency=is_agency,
            agency_id=agency_id or 0,
            currency=currency or DEFAULT_CURRENCY,
            service_client_id=service_key,
            tid=self.next_tid(),
        )
        self.clients[client.client_id] = client
        return [0, "SUCCESS", client.client_id]

    def create_person(self, uid: Any, params: Any) -> int:
        parse_uid(uid)
        if not isinstance(params, dict):
            raise invalid("CreatePerson params must be a struct")
        p = {str(key).lower(): value for key, value in params.items() if value is not None}
        for key in ("client_id", "type"):
            if key not in p:
                raise invalid(f"CreatePerson params: missing field {key}")
        client = self.client(p.pop("client_id"))
        person_type = parse_str(p.pop("type"), "type")
        person_id = parse_optional_id(p.pop("person_id", None), "person_id")
        values = {key: parse_str(str(value), key, max_len=1000) for key, value in p.items()
                  if not isinstance(value, dict | list)}  # fmt: skip
        allowed = PERSON_TYPES.get(client.region_id, NON_RESIDENT_TYPES)
        if person_type not in allowed:
            raise BalanceError(
                "INVALID_PERSON_TYPE", f"Person type {person_type} is not allowed for region {client.region_id}"
            )
        if person_id:
            person = self.persons.get(person_id)
            if person is None:
                raise BalanceError("PERSON_NOT_FOUND", f"Person with ID {person_id} not found in DB")
            if person.client_id != client.client_id or person.type != person_type:
                raise invalid(f"Person {person_id} belongs to client {person.client_id}, type {person.type}")
            merged = {**person.fields, **values}
            self._check_person(person_type, merged)
            person.fields = merged
            return person.person_id
        self._check_person(person_type, values)
        person = Person(person_id=self.next_id("person"), client_id=client.client_id, type=person_type, fields=values)
        self.persons[person.person_id] = person
        return person.person_id

    @staticmethod
    def _check_person(person_type: str, values: dict) -> None:
        for name in MANDATORY.get(person_type, ("name", "email")):
            if not values.get(name):
                raise BalanceError(
                    "MISSING_MANDATORY_PERSON_FIELD", f"Missing mandatory person field '{name}' for person type "
                    f"{person_type}", parent_codes=("INVALID_PARAM",)
                )  # fmt: skip
        for key, sizes in (("inn", (10, 12)), ("kpp", (9,))):
            value = values.get(key, "")
            if person_type == "ur" and value and (not value.isdigit() or len(value) not in sizes):
                raise BalanceError("INVALID_INN" if key == "inn" else "INVALID_KPP", f"Invalid {key}: {value!r}")

    def create_user_client_association(self, uid: Any, client_id: Any, user_uid: Any) -> list:
        parse_uid(uid)
        client_number = parse_id(client_id, "client_id")
        user = parse_int(user_uid, "user_uid", minimum=1)
        client = self.clients.get(client_number)
        if client is None:
            return [1003, f"Client with ID {client_number} not found in DB"]
        if user in self.unknown_users:
            return [2, f"Passport with ID {user} not found in DB"]
        linked = self.user_links.get(user)
        if linked is not None and linked != client.client_id:
            return [4008, f"Passport {user} is already linked to client {linked}"]
        self.user_links[user] = client.client_id
        return [0, "SUCCESS"]

    def find_client(self, params: Any) -> list:
        p = struct(params, "FindClient params", optional=FIND_KEYS)
        p = {key: value for key, value in p.items() if value != ""}
        if not p:
            raise invalid("FindClient needs at least one criterion")
        matches = sorted(self.clients.values(), key=lambda c: c.client_id)
        if "ClientID" in p:
            wanted_id = parse_id(p["ClientID"], "ClientID")
            matches = [c for c in matches if c.client_id == wanted_id]
        if "PassportID" in p or "Login" in p:
            uid = (parse_int(p["PassportID"], "PassportID", minimum=1) if "PassportID" in p
                   else self.logins.get(parse_str(p["Login"], "Login").casefold(), -1))  # fmt: skip
            matches = [c for c in matches if self.user_links.get(uid) == c.client_id]
        if "Email" in p:
            email = parse_str(p["Email"], "Email").casefold()
            matches = [c for c in matches if c.email.casefold() == email]
        if "Phone" in p:
            phone = parse_str(p["Phone"], "Phone")
            matches = [c for c in matches if c.phone == phone]
        if "Name" in p:
            name = parse_str(p["Name"], "Name").casefold()
            matches = [c for c in matches if name in c.name.casefold()]
        if "IsAgency" in p:
            flag = parse_flag(p["IsAgency"], "IsAgency")
            matches = [c for c in matches if c.is_agency == flag]
        if "AgencyID" in p:
            agency = parse_optional_id(p["AgencyID"], "AgencyID")
            matches = [c for c in matches if c.agency_id == agency]
        return [0, "", [self.client_struct(c) for c in matches]]

    def get_client_by_id_batch(self, client_ids: Any) -> list:
        ids = [parse_id(value, "client_id") for value in array(client_ids, "client ids", allow_empty=True)]
        return [0, [self.client_struct(self.clients[i]) for i in ids if i in self.clients]]

    def get_client_persons(self, client_id: Any, is_partner: Any = 0) -> list:
        client = self.client(client_id)
        partner = parse_flag(is_partner, "is_partner")
        persons = [p for p in self.persons.values() if p.client_id == client.client_id and not partner]
        return [self.person_struct(p) for p in sorted(persons, key=lambda p: p.person_id)]

    def get_client_contracts(self, params: Any) -> list:
        p = struct(params, "GetClientContracts params", required=("ClientID",),
                   optional=("ContractType", "Dt", "Signed", "ExternalID"))  # fmt: skip
        client = self.client(p["ClientID"], "ClientID")
        day = parse_date(p["Dt"], "Dt") if p.get("Dt") else self.today()
        signed_only = parse_flag(p.get("Signed", 1), "Signed")
        contracts = [
            c for c in sorted(self.contracts.values(), key=lambda c: c.contract_id)
            if c.client_id == client.client_id and (c.is_signed or not signed_only)
            and p.get("ContractType", "GENERAL") == "GENERAL"
            and ("ExternalID" not in p or c.external_id == p["ExternalID"])
        ]  # fmt: skip
        return [self.contract_struct(c, day) for c in contracts]

    def credit_limit_struct(self, contract: Contract, spent: Any) -> dict:
        return {
            "CONTRACT_ID": str(contract.contract_id),
            "CONTRACT_EID": contract.external_id,
            "ISO_CURRENCY": contract.currency,
            "LIMIT_TOTAL": fmt_money(contract.credit_limit),
            "LIMIT_SPENT": fmt_money(spent),
        }
