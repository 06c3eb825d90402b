"""The outbox moves from the gateway into the core: the model changes app, the table and its rows stay.

State only (SeparateDatabaseAndState): the model is created in `disbalance` on the existing table
`balance_gateway_outboxoperation`; `balance_gateway.0003` then points its foreign keys here and forgets its copy.
The content type moves too, so that admin log entries and permissions granted on the model keep pointing at it.
Then a real column: `failure_kind`, the class of the last failure stored as data (back-filled once).
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if ContentType.objects.filter(app_label="disbalance", model="outboxoperation").exists():
        return
    ContentType.objects.filter(app_label="balance_gateway", model="outboxoperation").update(app_label="disbalance")


def backfill_failure_kind(apps, schema_editor):
    """Rows that failed before the column existed: their class read once from the error text, never again."""
    OutboxOperation = apps.get_model("disbalance", "OutboxOperation")
    failed = OutboxOperation.objects.exclude(last_error="")
    failed.filter(last_error__startswith="no handler for kind").update(failure_kind="no_handler")
    failed.filter(failure_kind="").filter(
        models.Q(last_error__startswith="BalanceFinalError") | models.Q(last_error__startswith="OutboxFinalError")
    ).update(failure_kind="final")
    failed.filter(failure_kind="").update(failure_kind="retryable")


def move_content_type_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if ContentType.objects.filter(app_label="balance_gateway", model="outboxoperation").exists():
        return
    ContentType.objects.filter(app_label="disbalance", model="outboxoperation").update(app_label="balance_gateway")


class Migration(migrations.Migration):

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("disbalance", "0002_webhookevent"),
        ("balance_gateway", "0002_mismatch"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="OutboxOperation",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("kind", models.CharField(db_index=True, max_length=64)),
                        ("subject", models.CharField(db_index=True, help_text="What it is about, e.g. customer:12", max_length=100)),
                        ("dedup_key", models.CharField(blank=True, default="", max_length=200)),
                        ("payload", models.JSONField(blank=True, default=dict)),
                        ("status", models.CharField(choices=[("pending", "Pending"), ("in_progress", "In Progress"), ("done", "Done"), ("failed", "Failed")], default="pending", max_length=16)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("max_attempts", models.PositiveIntegerField(default=12)),
                        ("next_attempt_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("leased_until", models.DateTimeField(blank=True, null=True)),
                        ("last_error", models.TextField(blank=True, default="")),
                        ("result", models.JSONField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("done_at", models.DateTimeField(blank=True, null=True)),
                        ("service", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, to="disbalance.consumerservice")),
                    ],
                    options={
                        "db_table": "balance_gateway_outboxoperation",
                        "ordering": ["-id"],
                        "indexes": [models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx")],
                        "constraints": [models.UniqueConstraint(condition=models.Q(("status", "pending"), models.Q(("dedup_key", ""), _negated=True)), fields=("dedup_key",), name="outbox_one_pending_per_dedup_key")],
                    },
                ),
                migrations.AlterField(
                    model_name="webhookevent",
                    name="operation",
                    field=models.ForeignKey(blank=True, help_text="The outbox operation of the latest delivery", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="disbalance.outboxoperation"),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
        migrations.AddField(
            model_name="outboxoperation",
            name="failure_kind",
            field=models.CharField(blank=True, choices=[("", "none"), ("retryable", "retryable (unreachable, busy, waiting for a dependency)"), ("final", "final (refused: repeating cannot help)"), ("crash", "crash (a bug in the handler)"), ("no_handler", "no handler for the kind")], default="", max_length=16),
        ),
        migrations.RunPython(backfill_failure_kind, migrations.RunPython.noop),
    ]
