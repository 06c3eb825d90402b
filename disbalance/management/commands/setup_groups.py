"""`manage.py setup_groups`: the support console's groups and their permissions (idempotent).

Run it after every `migrate` that adds models (deploys do; `load_demo` calls it). Re-running converges: within the
apps it manages (`MANAGED_APPS`) each group ends up with exactly the permissions listed here (one removed here is
taken away); permissions of other apps are left alone, so `overdrafts` grants its own to the same groups (its
migration `0002_support_groups`). Users are put in the groups by hand (admin → Users) and need `is_staff` to sign in.

- `support`: view everything in billing's apps; fix and resolve mismatches; retry a customer's failed Balance
  operations; change a customer's agency; create a top-up payment link; re-send a customer's webhooks. No money
  moves (no adjustments, transfers, refunds or hold releases), no catalog, service or token changes.
- `billing-admin`: everything `support` has, plus wallet adjustments and moves between payers, refunds of charges,
  products (add and change), consumer services and their tokens (add, change, revoke; revoking needs `change`),
  webhook re-sends.

Ledger rows (transactions, entries, accounts) and the money rows of payments are read-only for everyone in their
admins, superusers included, whatever the permissions say.

The console's own permissions are not tied to a model of their own, so they live on the Customer content type
(`customers.change_agency`, `customers.adjust_wallet`, `customers.retry_operation`, `customers.refund_charge`,
`customers.create_payment_link`, `customers.resend_webhooks`) and are created here;
`reconciliation.fix_mismatch` / `resolve_mismatch` are declared by the Mismatch model.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

# Billing's apps: `support` may view every model in them.
BILLING_APPS = ("disbalance", "balance_gateway", "agencies", "customers", "wallets", "payments", "overdrafts",
                "reconciliation")
# The apps whose group permissions this command owns (`overdrafts` grants its own in a migration).
MANAGED_APPS = ("disbalance", "balance_gateway", "agencies", "customers", "wallets", "payments", "reconciliation")

# The console's permissions without a model of their own, created on the Customer content type.
CUSTOMER_PERMISSIONS = {
    "change_agency": "Can change a customer's agency (with a reason)",
    "adjust_wallet": "Can adjust a customer's wallet or move money between its payers (with a reason)",
    "retry_operation": "Can retry a customer's failed Balance operation (with a reason)",
    "refund_charge": "Can refund a customer's charge, whole or part (with a reason)",
    "create_payment_link": "Can create a top-up payment link for a customer (with a reason)",
    "resend_webhooks": "Can re-send a customer's webhooks for a period (with a reason)",
}

SUPPORT = "support"
BILLING_ADMIN = "billing-admin"

SUPPORT_EXTRA = (
    "customers.change_agency",
    "customers.retry_operation",
    "customers.create_payment_link",
    "customers.resend_webhooks",
    "reconciliation.fix_mismatch",
    "reconciliation.resolve_mismatch",
)
BILLING_ADMIN_EXTRA = (
    "customers.adjust_wallet",
    "customers.refund_charge",
    "payments.add_product",
    "payments.change_product",
    "disbalance.add_consumerservice",
    "disbalance.change_consumerservice",
    "disbalance.add_servicetoken",
    "disbalance.change_servicetoken",
    "disbalance.change_webhookevent",
)


def _is_history(model: type) -> bool:
    return model.__name__.startswith("Historical") and hasattr(model, "instance_type")


def _permission(spec: str) -> Permission:
    """The permission `app_label.codename`, created if missing (for the model that declares it, or Customer)."""
    app_label, _, codename = spec.partition(".")
    if app_label == "customers" and codename in CUSTOMER_PERMISSIONS:
        model, name = apps.get_model("customers", "Customer"), CUSTOMER_PERMISSIONS[codename]
    else:
        for model in apps.get_app_config(app_label).get_models():
            opts = model._meta
            declared = {**{f"{action}_{opts.model_name}": f"Can {action} {opts.verbose_name_raw}"
                           for action in opts.default_permissions}, **dict(opts.permissions)}
            if codename in declared:
                name = declared[codename]
                break
        else:
            raise CommandError(f"No model of {app_label!r} declares the permission {codename!r}.")
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    permission, _ = Permission.objects.get_or_create(content_type=content_type, codename=codename,
                                                     defaults={"name": name[:255]})
    return permission


def view_everything() -> list[str]:
    return [f"{model._meta.app_label}.view_{model._meta.model_name}"
            for label in BILLING_APPS if label in {config.label for config in apps.get_app_configs()}
            for model in apps.get_app_config(label).get_models()
            if not _is_history(model) and "view" in model._meta.default_permissions]


def group_permissions() -> dict[str, list[str]]:
    support = [*view_everything(), *SUPPORT_EXTRA]
    return {SUPPORT: support, BILLING_ADMIN: [*support, *BILLING_ADMIN_EXTRA]}


@transaction.atomic
def groups_setup() -> dict[str, int]:
    """Create or update the groups; returns {group name: number of permissions}."""
    result = {}
    for name, specs in group_permissions().items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [_permission(spec) for spec in dict.fromkeys(specs)]
        group.permissions.add(*wanted)
        stale = group.permissions.filter(content_type__app_label__in=MANAGED_APPS).exclude(
            pk__in=[permission.pk for permission in wanted])
        group.permissions.remove(*stale)
        result[name] = group.permissions.count()
    return result


class Command(BaseCommand):
    help = "Create or update the support console's groups (support, billing-admin) and their permissions."

    def handle(self, *args: object, **options: object) -> None:
        for name, count in groups_setup().items():
            if options["verbosity"]:
                self.stdout.write(f"{name}: {count} permissions")
