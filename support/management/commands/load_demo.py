"""`manage.py load_demo`: a small demo for `make run` (idempotent). Prints only the demo token on stdout.

Users: `admin`/`admin` (superuser) and `support`/`support` (staff, in the `support` group made by `setup_groups`).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from agencies.models import Agency
from agencies.services import AgencyData, agency_contracts_refresh, agency_register
from balance_gateway.emulator.remote import EmulatorControl
from balance_gateway.exceptions import BalanceError
from customers.services import CustomerData, customer_register
from disbalance.models import ServiceToken, hash_token
from disbalance.outbox import outbox_drain
from disbalance.services import service_create, service_token_issue
from payments.services import product_create

DEMO_TOKEN = "dsb_demo_local_only_token"


class Command(BaseCommand):
    help = "Load the demo service, token, admin user, an agency and customers (for `make run`; DEBUG only)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("load_demo is for local demos only (DEBUG is off)")
        service = service_create(slug="demo", name="Demo classifieds", balance_service_id=7).service
        if not ServiceToken.objects.filter(token_hash=hash_token(DEMO_TOKEN)).exists():
            service_token_issue(service=service, label="demo", raw_token=DEMO_TOKEN)
        user_model = get_user_model()
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", "admin@example.com", "admin")
        self._support_user(user_model)
        self._load_products(service)

        agency = agency_register(
            service=service, external_id="agency:1",
            data=AgencyData(name="Demo Agency LLC", email="agency@example.com",
                            legal={"inn": "7701234567", "legal_address": "Moscow, Tverskaya 1", "kpp": "770101001",
                                   "long_name": "Limited Liability Company", "postal_address": "Moscow, Tverskaya 1",
                                   "postcode": "101000"}),
        ).agency
        customer_register(
            service=service, external_id="dealer:20101",
            data=CustomerData(kind="company", name="Demo Motors LLC", email="dealer@example.com",
                              legal={"inn": "7709876543", "legal_address": "Moscow, Lenina 2", "kpp": "770101001",
                                     "long_name": "Limited Liability Company", "postal_address": "Moscow, Lenina 2",
                                     "postcode": "101000"}),
        )
        customer_register(
            service=service, external_id="user:501",
            data=CustomerData(kind="individual", name="Ivan Petrov", email="ivan@example.com",
                              legal={"lname": "Petrov", "fname": "Ivan"}),
        )
        outbox_drain(max_rounds=3)
        self._demo_contract(Agency.objects.get(pk=agency.pk))
        self._adopt_legacy(service)
        self.stdout.write(DEMO_TOKEN)

    def _support_user(self, user_model) -> None:
        """The console's groups (`setup_groups`) and a `support` / `support` staff user in the `support` group."""
        call_command("setup_groups", verbosity=0, stdout=self.stderr)
        user = user_model.objects.filter(username="support").first()
        if user is None:
            user = user_model.objects.create_user("support", "support@example.com", "support", is_staff=True)
        user.groups.add(Group.objects.get(name="support"))

    def _load_products(self, service) -> None:
        product_create(service=service, code="placement", name="Listing placement", kind="placement",
                       balance_product_id=503162)
        product_create(service=service, code="boost", name="Boost to the top", kind="vas", balance_product_id=503163)
        product_create(service=service, code="highlight", name="Highlighting", kind="vas", balance_product_id=503164)

    def _adopt_legacy(self, service) -> None:
        """A consumer's legacy Balance state (scripts/demo-legacy/, seeded into the emulator by scripts/run.sh):
        its customers linked and its orders' money adopted, as docs/migrating.md describes. Idempotent."""
        folder = Path(settings.BASE_DIR) / "scripts" / "demo-legacy"
        try:
            call_command("import_customers", str(folder / "customers.csv"), "--service", service.slug,
                         "--no-progress", stdout=self.stderr, stderr=self.stderr)
            call_command("adopt_orders", str(folder / "orders.csv"), "--service", service.slug, "--no-progress",
                         stdout=self.stderr, stderr=self.stderr)
        except CommandError as exc:
            self.stderr.write(f"legacy orders not adopted (is Balance the emulator seeded with {folder}?): {exc}")

    def _demo_contract(self, agency: Agency) -> None:
        if agency.balance_client_id is None or agency.contracts.filter(active=True).exists():
            return
        try:
            EmulatorControl(settings.BALANCE_URL).create_contract(
                agency.balance_client_id, payment_type="prepaid", services=[agency.service.balance_service_id]
            )
            agency_contracts_refresh(agency=agency)
        except (BalanceError, OSError) as exc:
            self.stderr.write(f"demo contract not created (is Balance the emulator?): {exc}")
