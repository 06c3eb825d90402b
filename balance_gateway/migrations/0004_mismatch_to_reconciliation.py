"""The mismatch queue moved to the `reconciliation` app (`reconciliation.0001`): the gateway forgets its copies.

State only: the tables `balance_gateway_mismatch` and `balance_gateway_historicalmismatch` and their rows stay.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("balance_gateway", "0003_outbox_to_core"),
        ("reconciliation", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="HistoricalMismatch"),
                migrations.DeleteModel(name="Mismatch"),
            ],
            database_operations=[],
        ),
    ]
