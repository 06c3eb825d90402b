"""The `support` and `billing-admin` groups get the overdraft permissions (created if missing; other apps may add
their own permissions to the same groups). Only `billing-admin` may raise a limit above Balance's grant."""

from django.db import migrations

SUPPORT = [
    "view_overdraft", "view_historicaloverdraft", "view_limitoverride", "add_limitoverride", "change_limitoverride",
    "view_block", "add_block", "change_block", "view_agencycredit",
]
BILLING_ADMIN = [*SUPPORT, "raise_limit"]


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; make sure this app's exist now.
    app_config = apps.get_app_config("overdrafts")
    app_config.models_module = True  # a migration-state stub has none, which create_permissions would skip
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in (("support", SUPPORT), ("billing-admin", BILLING_ADMIN)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="overdrafts",
                                                         codename__in=codenames))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name in ("support", "billing-admin"):
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(*Permission.objects.filter(content_type__app_label="overdrafts"))


class Migration(migrations.Migration):
    dependencies = [
        ("overdrafts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
