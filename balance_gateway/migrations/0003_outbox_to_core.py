"""The outbox moved to the core (`disbalance.0003`): the gateway's foreign keys point there; its copy goes.

State only: the table `balance_gateway_outboxoperation` and its rows stay where they are.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("balance_gateway", "0002_mismatch"),
        ("disbalance", "0003_outboxoperation"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="balancecall",
                    name="operation",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="calls", to="disbalance.outboxoperation"),
                ),
                migrations.AlterField(
                    model_name="mismatch",
                    name="operation",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="mismatches", to="disbalance.outboxoperation"),
                ),
                migrations.AlterField(
                    model_name="historicalmismatch",
                    name="operation",
                    field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="disbalance.outboxoperation"),
                ),
                migrations.DeleteModel(name="OutboxOperation"),
            ],
            database_operations=[],
        ),
    ]
