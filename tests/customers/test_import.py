"""`manage.py import_customers`: linking existing Balance clients, against the emulator over HTTP.

The Balance side is set up in the emulator in-process (`BalanceEmulator.call`, the same validation as over HTTP,
without the round trips) or through `BalanceClient`; the import itself always talks to it over HTTP.
"""

import csv
import io

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError

from agencies.models import Agency, Contract
from balance_gateway.client import BalanceClient
from balance_gateway.models import BalanceCall
from customers import importing
from customers.import_file import COLUMNS, Outcome, import_file_read
from customers.importing import customers_import
from customers.models import AgencyAssignment, Customer
from disbalance.models import OutboxOperation

pytestmark = pytest.mark.django_db

SERVICE_ID = 7  # the `service` fixture's Balance ServiceID


# --- helpers ----------------------------------------------------------------------------------------------


def make_client(emu, name, *, is_agency=False, person=None):
    """A Balance client (and a person of `person` type "ur"/"ph", if given), made in-process. Returns ids."""
    _, _, client_id = emu.call("Balance2.CreateClient", (settings.BALANCE_OPERATOR_UID, {
        "NAME": name, "IS_AGENCY": 1 if is_agency else 0, "SERVICE_ID": SERVICE_ID,
    }))
    person_id = make_person(emu, client_id, person) if person else None
    return client_id, person_id


def make_person(emu, client_id, person_type, name="Payer"):
    fields = {"client_id": client_id, "type": person_type, "name": name, "email": "payer@example.com",
              "phone": "+7 495 000-00-00"}
    if person_type == "ur":
        fields.update(inn="7701234567", kpp="770101001", longname=f"LLC {name}", legaladdress="Moscow",
                      postaddress="Moscow", postcode="101000")
    else:
        fields.update(lname="Petrov", fname="Ivan")
    return emu.call("Balance2.CreatePerson", (settings.BALANCE_OPERATOR_UID, fields))


def row(external_id, kind, client_id, **extra):
    values = {"external_id": external_id, "kind": kind, "balance_client_id": str(client_id),
              "name": extra.pop("name", f"Name of {external_id}")}
    if kind in ("company", "agency"):
        values.update(inn="7701234567", legal_address="Moscow, Tverskaya 1")
    else:
        values.update(lname="Petrov", fname="Ivan")
    values.update({k: str(v) for k, v in extra.items()})
    return values


def write_csv(path, rows, columns=COLUMNS):
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_import(path, *args):
    """Run the command; returns (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("import_customers", str(path), "--service", "autoru", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def skipped_lines(stdout):
    """{line: "external_id: reason"} from the report's "Skipped:" section."""
    lines = {}
    section = None
    for text in stdout.splitlines():
        if not text.startswith("  "):
            section = text
            continue
        if section == "Skipped:":
            where, _, rest = text.strip().partition(": ")
            lines[int(where.removeprefix("line "))] = rest
    return lines


def emulator_sizes(emulator):
    state = emulator.state()
    return len(state["clients"]), len(state["persons"])


# --- the acceptance case ------------------------------------------------------------------------------------


def test_thousand_rows_with_bad_ones_link_the_good_then_change_nothing(service, balance, emulator, tmp_path):
    agency_client, _ = make_client(balance, "Agency LLC", is_agency=True, person="ur")
    emulator.create_contract(agency_client, payment_type="prepaid", services=[SERVICE_ID])
    other_agency_client, _ = make_client(balance, "Stray agency", is_agency=True, person="ur")
    no_person_client, _ = make_client(balance, "No payer LLC")

    rows = []
    for i in range(993):
        kind = "company" if i % 2 else "individual"
        client_id, _ = make_client(balance, f"Customer {i}", person="ur" if kind == "company" else "ph")
        rows.append(row(f"dealer:{i}", kind, client_id, agency_external_id="agency:1" if i % 3 == 0 else ""))
    bad = {
        "unknown client": row("dealer:bad1", "company", 999999),
        "agency flag": row("dealer:bad2", "company", other_agency_client),
        "bad INN": row("dealer:bad3", "company", make_client(balance, "Bad INN", person="ur")[0], inn="12345"),
        "no person": row("dealer:bad4", "company", no_person_client),
        "duplicate": row("dealer:5", "company", make_client(balance, "Dup", person="ur")[0]),
        "unknown agency": row("dealer:bad6", "individual", make_client(balance, "Orphan", person="ph")[0],
                              agency_external_id="agency:nope"),
    }
    # Bad rows spread through the file; the agency comes last but is imported first.
    for n, bad_row in enumerate(bad.values()):
        rows.insert(100 + n * 150, bad_row)
    rows.append(row("agency:1", "agency", agency_client))
    assert len(rows) == 1000
    path = write_csv(tmp_path / "customers.csv", rows)
    line_of = {r["external_id"]: n + 2 for n, r in enumerate(rows)}  # line 1 is the header
    clients_before = emulator_sizes(emulator)

    out, err = run_import(path, "--report", str(tmp_path / "skipped.csv"))

    assert out.splitlines()[0] == "994 linked, 0 unchanged, 6 skipped.", out
    skipped = skipped_lines(out)
    first_line, dup_line = (n + 2 for n, r in enumerate(rows) if r["external_id"] == "dealer:5")
    assert skipped == {
        line_of["dealer:bad1"]: "dealer:bad1: Balance client 999999 not found",
        line_of["dealer:bad2"]: f"dealer:bad2: Balance client {other_agency_client} is an agency, "
                                "the row's kind is company",
        line_of["dealer:bad3"]: "dealer:bad3: legal.inn: INN is 10 or 12 digits.",
        line_of["dealer:bad4"]: f"dealer:bad4: Balance client {no_person_client} has no ur person",
        dup_line: f"dealer:5: external id repeated in the file (first on line {first_line})",
        line_of["dealer:bad6"]: "dealer:bad6: unknown agency agency:nope (not in this file, not in billing)",
    }
    assert "import" in err  # the progress bar went to stderr
    with (tmp_path / "skipped.csv").open(encoding="utf-8") as report:
        written = {int(r["line"]): f"{r['external_id']}: {r['reason']}" for r in csv.DictReader(report)}
    assert written == skipped

    assert Customer.objects.count() == 993
    assert set(Customer.objects.values_list("status", flat=True)) == {"active"}
    assert not Customer.objects.filter(balance_person_id=None).exists()
    agency = Agency.objects.get()
    assert (agency.external_id, agency.status, agency.balance_client_id) == ("agency:1", "active", agency_client)
    assert agency.contracts.filter(active=True).count() == 1
    assert Customer.objects.filter(agency=agency).count() == 331  # i % 3 == 0 for i < 993
    assert AgencyAssignment.objects.filter(agency=agency, until=None).count() == 331
    assert AgencyAssignment.objects.count() == 993
    assert not OutboxOperation.objects.exists()  # nothing queued for Balance
    assert emulator_sizes(emulator) == clients_before  # nothing created in Balance

    calls = BalanceCall.objects.count()
    again, _ = run_import(path)
    assert again.splitlines()[0] == "0 linked, 994 unchanged, 6 skipped.", again
    assert skipped_lines(again) == skipped
    assert Customer.objects.count() == 993 and AgencyAssignment.objects.count() == 993
    # Unchanged rows are not looked up again; only the rows still to check go to Balance.
    assert BalanceCall.objects.count() - calls <= 10


# --- dry run ------------------------------------------------------------------------------------------------


def test_dry_run_checks_balance_and_writes_nothing(service, balance, emulator, tmp_path):
    agency_client, _ = make_client(balance, "Agency LLC", is_agency=True, person="ur")
    good, _ = make_client(balance, "Good LLC", person="ur")
    bare, _ = make_client(balance, "No person")
    path = write_csv(tmp_path / "f.csv", [
        row("dealer:1", "company", good, agency_external_id="agency:1"),
        row("dealer:2", "company", bare),
        row("agency:1", "agency", agency_client),
    ])

    out, _ = run_import(path, "--dry-run")

    assert out.splitlines()[0] == "Dry run, nothing written: 2 would link, 0 unchanged, 1 skipped.", out
    assert skipped_lines(out) == {3: f"dealer:2: Balance client {bare} has no ur person"}
    for model in (Customer, Agency, Contract, AgencyAssignment, OutboxOperation):
        assert not model.objects.exists(), model
    assert BalanceCall.objects.filter(method="GetClientPersons").count() == 3  # Balance was checked

    real, _ = run_import(path)
    assert real.splitlines()[0] == "2 linked, 0 unchanged, 1 skipped."


# --- agencies ----------------------------------------------------------------------------------------------


def test_agencies_are_imported_first_and_customers_get_their_agency(service, balance, emulator, tmp_path):
    agency_client, agency_person = make_client(balance, "Agency LLC", is_agency=True, person="ur")
    contract_id = emulator.create_contract(agency_client, payment_type="postpaid", services=[SERVICE_ID])
    customer_client, customer_person = make_client(balance, "Motors", person="ph")
    path = write_csv(tmp_path / "f.csv", [
        row("dealer:1", "individual", customer_client, agency_external_id="agency:1"),
        row("agency:1", "agency", agency_client),
    ])

    out, _ = run_import(path)

    assert out.splitlines()[0] == "2 linked, 0 unchanged, 0 skipped.", out
    agency = Agency.objects.get(external_id="agency:1")
    assert (agency.status, agency.balance_client_id, agency.balance_person_id) == (
        "active", agency_client, agency_person)
    [contract] = agency.contracts.all()
    assert (contract.balance_contract_id, contract.payment_type, contract.active) == (contract_id, "postpaid", True)
    assert agency.contracts_refreshed_at is not None
    customer = Customer.objects.get(external_id="dealer:1")
    assert customer.agency == agency and customer.kind == "individual"
    assert (customer.balance_client_id, customer.balance_person_id) == (customer_client, customer_person)
    [assignment] = customer.agency_assignments.all()
    assert assignment.agency == agency and assignment.until is None and assignment.changed_by
    assert customer.history.first().history_change_reason == f"imported: Balance client {customer_client}"
    # The API shows the linked customer as any other.


def test_customer_of_a_skipped_agency_is_skipped_and_an_agency_already_in_billing_is_used(
    service, balance, emulator, tmp_path, api
):
    not_agency, _ = make_client(balance, "Plain client", person="ur")
    c1, _ = make_client(balance, "C1", person="ur")
    c2, _ = make_client(balance, "C2", person="ur")
    existing_client, _ = make_client(balance, "Existing agency", is_agency=True, person="ur")
    write_csv(tmp_path / "agencies.csv", [row("agency:old", "agency", existing_client)])
    run_import(tmp_path / "agencies.csv")
    c3, _ = make_client(balance, "C3", person="ur")
    path = write_csv(tmp_path / "f.csv", [
        row("agency:new", "agency", not_agency),
        row("dealer:1", "company", c1, agency_external_id="agency:new"),
        row("dealer:2", "company", c2, agency_external_id="agency:old"),
        row("agency:invalid", "agency", 12345, legal_address=""),
        row("dealer:3", "company", c3, agency_external_id="agency:invalid"),
    ])

    out, _ = run_import(path)

    assert skipped_lines(out) == {
        2: f"agency:new: Balance client {not_agency} is not an agency, the row's kind is agency",
        3: "dealer:1: agency agency:new was skipped (line 2)",
        5: "agency:invalid: legal.legal_address: This field is required.",
        6: "dealer:3: agency agency:invalid was skipped (line 5)",
    }
    assert Customer.objects.get().agency.external_id == "agency:old"
    body = api.get("/api/v1/customers/dealer:2").json()
    assert body["status"] == "active" and body["agency"] == "agency:old"
    assert body["balance"]["client_id"] == c2


# --- idempotency and conflicts -------------------------------------------------------------------------------


def test_links_already_made_or_taken_are_reported(service, balance, emulator, tmp_path, api):
    a, _ = make_client(balance, "A", person="ur")
    b, _ = make_client(balance, "B", person="ur")
    c, _ = make_client(balance, "C", person="ur")
    run_import(write_csv(tmp_path / "first.csv", [row("dealer:1", "company", a)]))
    # Registered through the API and not yet in Balance (the outbox has not run).
    api.post("/api/v1/customers", {"external_id": "dealer:3", "kind": "company", "name": "Three",
                                   "legal": {"inn": "7701234567", "legal_address": "Moscow", "kpp": "770101001",
                                             "long_name": "Limited Liability Company", "postal_address": "Moscow",
                                             "postcode": "101000"}}, format="json")
    path = write_csv(tmp_path / "second.csv", [
        row("dealer:1", "company", a),  # same link: unchanged
        row("dealer:1", "company", b),  # repeated in the file
        row("dealer:2", "company", a),  # client taken by dealer:1
        row("dealer:3", "company", c),  # registered, not linked
    ])

    out, _ = run_import(path)

    assert out.splitlines()[0] == "0 linked, 1 unchanged, 3 skipped.", out
    assert skipped_lines(out) == {
        3: "dealer:1: external id repeated in the file (first on line 2)",
        4: f"dealer:2: Balance client {a} repeated in the file (first on line 2)",
        5: "dealer:3: external id already registered in billing without a Balance client yet (status registering)",
    }
    path = write_csv(tmp_path / "third.csv", [row("dealer:1", "company", b), row("dealer:2", "company", a)])
    out, _ = run_import(path)
    assert skipped_lines(out) == {
        2: f"dealer:1: external id already linked to client {a}",
        3: f"dealer:2: Balance client {a} already linked to customer dealer:1",
    }
    assert Customer.objects.get(external_id="dealer:1").balance_client_id == a


# --- persons -------------------------------------------------------------------------------------------------


def test_person_choice(service, balance, emulator, tmp_path):
    given_client, _ = make_client(balance, "Given", person="ur")
    given_person = make_person(balance, given_client, "ur", name="Second payer")
    _, foreign_person = make_client(balance, "Foreign", person="ur")
    fallback_client, fallback_person = make_client(balance, "Fallback", person="ur")
    hidden_client, hidden_person = make_client(balance, "Hidden", person="ur")
    with balance.state.lock:
        balance.state.persons[hidden_person].hidden = 1
    wrong_type_client, _ = make_client(balance, "Wrong type", person="ph")
    path = write_csv(tmp_path / "f.csv", [
        row("dealer:1", "company", given_client, balance_person_id=given_person),
        row("dealer:2", "company", fallback_client, balance_person_id=foreign_person),
        row("dealer:3", "company", hidden_client),
        row("dealer:4", "company", wrong_type_client),
    ])

    out, _ = run_import(path)

    assert out.splitlines()[0] == "2 linked, 0 unchanged, 2 skipped.", out
    assert skipped_lines(out) == {
        4: f"dealer:3: Balance client {hidden_client} has no ur person",
        5: f"dealer:4: Balance client {wrong_type_client} has no ur person",
    }
    assert Customer.objects.get(external_id="dealer:1").balance_person_id == given_person
    assert Customer.objects.get(external_id="dealer:2").balance_person_id == fallback_person
    assert (f"line 3: dealer:2: given person {foreign_person} is not a person of client {fallback_client}; "
            f"using person {fallback_person}") in out


# --- validation and the file --------------------------------------------------------------------------------


def test_rows_are_validated_with_the_api_rules(service, balance, tmp_path):
    path = write_csv(tmp_path / "f.csv", [
        row("bad id!", "company", 100000),
        row("dealer:1", "partner", 100000),
        row("dealer:2", "company", "12x"),
        {**row("dealer:3", "individual", 100001), "fname": ""},
        row("agency:1", "agency", 100002, agency_external_id="agency:2"),
        row("dealer:4", "company", 100003, balance_person_id="-5"),
        row("dealer:5", "company", 100004, email="not-an-email"),
    ])

    out, _ = run_import(path)

    assert out.splitlines()[0] == "0 linked, 0 unchanged, 7 skipped.", out
    assert skipped_lines(out) == {
        2: "bad id!: external_id: 1 to 128 characters of letters, digits and :_-.@",
        3: "dealer:1: kind: must be one of company, individual, agency, got 'partner'",
        4: "dealer:2: balance_client_id: must be a positive whole number, got '12x'",
        5: "dealer:3: legal.fname: Required for an individual.",
        6: "agency:1: agency_external_id: an agency cannot have an agency",
        7: "dealer:4: balance_person_id: must be a positive whole number, got '-5'",
        8: "dealer:5: email: Enter a valid email address.",
    }
    assert not BalanceCall.objects.exists()  # nothing valid: Balance is not asked


def test_unreadable_files_exit_1_and_change_nothing(service, balance, tmp_path):
    (tmp_path / "latin1.csv").write_bytes(",".join(COLUMNS).encode() + b"\ndealer:\xe9,company\n")
    write_csv(tmp_path / "header.csv", [], columns=("external_id", "kind", "client_id"))
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    cases = {
        "missing.csv": "no such file",
        "latin1.csv": "not UTF-8 text",
        "header.csv": "bad header (missing column(s): balance_client_id, name; unknown column(s): client_id)",
        "empty.csv": "the file is empty",
    }
    for name, message in cases.items():
        with pytest.raises(CommandError) as caught:
            run_import(tmp_path / name)
        assert caught.value.returncode == 1
        assert message in str(caught.value) and "Nothing was imported" in str(caught.value)
    assert not Customer.objects.exists()


def test_a_row_with_the_wrong_number_of_fields_is_skipped(service, balance, emulator, tmp_path):
    client_id, _ = make_client(balance, "Fine", person="ur")
    path = tmp_path / "f.csv"
    path.write_text("external_id,kind,balance_client_id,name,inn,legal_address\n"
                    "dealer:1,company,1,Short\n"
                    f'dealer:2,company,{client_id},"Name, with comma",7701234567,"Moscow,\nTverskaya 1"\n\n'
                    "dealer:3,company\n", encoding="utf-8")

    out, _ = run_import(path)

    assert out.splitlines()[0] == "1 linked, 0 unchanged, 2 skipped.", out
    assert skipped_lines(out) == {2: "dealer:1: 4 fields where the header has 6",
                                  6: "dealer:3: 2 fields where the header has 6"}
    assert Customer.objects.get().legal_address == "Moscow,\nTverskaya 1"


# --- Balance failures ----------------------------------------------------------------------------------------


def test_balance_unreachable_exits_1_with_a_message_and_writes_nothing(service, balance, settings, tmp_path,
                                                                        monkeypatch):
    client_id, _ = make_client(balance, "Motors", person="ur")
    path = write_csv(tmp_path / "f.csv", [row("dealer:1", "company", client_id)])
    balance.stop()
    monkeypatch.setattr(importing, "READ_RETRY_DELAYS", (0.01,))
    settings.BALANCE_TRANSIENT_RETRIES = 0  # the gateway's own quick retries are pinned elsewhere

    with pytest.raises(CommandError) as caught:
        run_import(path)

    assert caught.value.returncode == 1
    message = str(caught.value)
    assert message.startswith("Balance is unreachable (GetClientByIdBatch CONNECTION_ERROR"), message
    assert "Re-run the same file" in message
    assert not Customer.objects.exists()
    assert BalanceCall.objects.filter(method="GetClientByIdBatch", outcome="connection_error").count() == 2


def test_balance_failing_mid_run_keeps_committed_batches_and_a_rerun_finishes(service, balance, emulator,
                                                                               tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "READ_RETRY_DELAYS", (0.01,))
    ids = [make_client(balance, f"C{i}", person="ur")[0] for i in range(6)]
    rows = import_file_read(write_csv(tmp_path / "f.csv", [row(f"dealer:{i}", "company", c)
                                                           for i, c in enumerate(ids)]))
    done = []

    def progress(n):
        done.append(n)
        if len(done) == 2:  # the first batch is written: Balance goes down
            emulator.set_faults({"*": {"error_rate": 1.0}})

    with pytest.raises(importing.ImportAborted) as caught:
        customers_import(service=service, rows=rows, batch_size=2, progress=progress)

    assert "Balance is unreachable" in str(caught.value)
    assert caught.value.report.counts()["linked"] == 2
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["dealer:0", "dealer:1"]

    emulator.set_faults({})
    report = customers_import(service=service, rows=rows, batch_size=2)
    assert report.counts() == {"linked": 4, "unchanged": 2, "skipped": 0, "would_link": 0}
    assert [r.outcome for r in report.results] == [Outcome.UNCHANGED] * 2 + [Outcome.LINKED] * 4


def test_transient_balance_errors_are_retried(service, balance, emulator, tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "READ_RETRY_DELAYS", (0.01, 0.01, 0.01, 0.01))
    ids = [make_client(balance, f"C{i}", person="ur")[0] for i in range(5)]
    path = write_csv(tmp_path / "f.csv", [row(f"dealer:{i}", "company", c) for i, c in enumerate(ids)])
    emulator.set_faults({"*": {"error_rate": 0.3}, "seed": 7})

    out, _ = run_import(path)

    assert out.splitlines()[0] == "5 linked, 0 unchanged, 0 skipped.", out
    assert BalanceCall.objects.exclude(outcome="ok").exists()  # faults happened and were retried


def test_balance_client_is_only_read(service, balance, emulator, tmp_path):
    """The import uses reads only: the call log has no Create* method."""
    client_id, _ = make_client(balance, "Motors", person="ur")
    agency_client, _ = make_client(balance, "Agency", is_agency=True, person="ur")
    run_import(write_csv(tmp_path / "f.csv", [row("dealer:1", "company", client_id),
                                              row("agency:1", "agency", agency_client)]))
    assert set(BalanceCall.objects.values_list("method", flat=True)) == {
        "GetClientByIdBatch", "GetClientPersons", "GetClientContracts"}
    with BalanceClient() as client:
        assert client.get_client_by_id_batch([client_id])[0].name == "Motors"



def test_link_services_check_again_inside_the_transaction(service, tmp_path):
    """What the run checked before reading Balance may have changed by the time it writes: the services refuse."""
    first, same_id, same_client = (
        importing.import_row_validate(raw) for raw in import_file_read(write_csv(tmp_path / "f.csv", [
            row("dealer:1", "company", 100001), row("dealer:1", "company", 100002), row("dealer:2", "company", 100001),
        ]))
    )
    importing.customer_link_existing(service=service, row=first, person_id=200001, agency=None)
    with pytest.raises(importing.LinkConflict, match="Balance client 100001 linked meanwhile to customer dealer:1"):
        importing.customer_link_existing(service=service, row=same_client, person_id=200001, agency=None)
    with pytest.raises(IntegrityError):
        importing.customer_link_existing(service=service, row=same_id, person_id=200002, agency=None)
    assert Customer.objects.count() == 1 and AgencyAssignment.objects.count() == 1
