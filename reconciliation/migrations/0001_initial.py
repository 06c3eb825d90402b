"""Reconciliation becomes its own app: the mismatch queue moves here from the gateway, tables and rows untouched.

State only (SeparateDatabaseAndState): `Mismatch` and its history are created here on the existing tables
`balance_gateway_mismatch` and `balance_gateway_historicalmismatch`; `balance_gateway.0004` forgets its copies.
The content types move too, so that the admin log, the history and the permissions granted on the model
(`fix_mismatch`, `resolve_mismatch`, to groups and users) keep pointing at it. `kind` has no choices any more:
the checks' registry names the kinds, so a new check needs no migration.
"""

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.db import migrations, models


MODELS = ("mismatch", "historicalmismatch")


def move_content_types(apps, schema_editor, source="balance_gateway", target="reconciliation"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        if not ContentType.objects.filter(app_label=target, model=model).exists():
            ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="reconciliation", target="balance_gateway")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('agencies', '0001_initial'),
        ('customers', '0002_agency_assignment'),
        ('disbalance', '0003_outboxoperation'),
        ('balance_gateway', '0003_outbox_to_core'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('payments', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='HistoricalMismatch',
                    fields=[
                        ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                        ('kind', models.CharField(max_length=32)),
                        ('severity', models.CharField(choices=[('info', 'Info'), ('warning', 'Warning'), ('critical', 'Critical')], max_length=16)),
                        ('status', models.CharField(choices=[('open', 'Open'), ('resolved', 'Resolved')], default='open', max_length=16)),
                        ('key', models.CharField(help_text='What differs, e.g. money_out:order:123', max_length=200)),
                        ('summary', models.CharField(max_length=300)),
                        ('details', models.JSONField(blank=True, default=dict)),
                        ('detected_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_seen_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('times_seen', models.PositiveIntegerField(default=1)),
                        ('fix_attempts', models.PositiveIntegerField(default=0)),
                        ('last_fix_at', models.DateTimeField(blank=True, null=True)),
                        ('last_fix_note', models.CharField(blank=True, default='', max_length=500)),
                        ('resolved_at', models.DateTimeField(blank=True, null=True)),
                        ('resolution', models.TextField(blank=True, default='')),
                        ('history_id', models.AutoField(primary_key=True, serialize=False)),
                        ('history_date', models.DateTimeField(db_index=True)),
                        ('history_change_reason', models.CharField(max_length=100, null=True)),
                        ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
                        ('agency', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='agencies.agency')),
                        ('customer', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='customers.customer')),
                        ('history_user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('last_fix_by', models.ForeignKey(blank=True, db_constraint=False, help_text='Empty: fixed automatically by reconciliation', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('operation', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='disbalance.outboxoperation')),
                        ('order', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='payments.balanceorder')),
                        ('resolved_by', models.ForeignKey(blank=True, db_constraint=False, help_text='Empty: closed by the system', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('service', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='disbalance.consumerservice')),
                    ],
                    options={
                        'verbose_name': 'historical mismatch',
                        'verbose_name_plural': 'historical mismatches',
                        'db_table': 'balance_gateway_historicalmismatch',
                        'ordering': ('-history_date', '-history_id'),
                        'get_latest_by': ('history_date', 'history_id'),
                    },
                    bases=(simple_history.models.HistoricalChanges, models.Model),
                ),
                migrations.CreateModel(
                    name='Mismatch',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(max_length=32)),
                        ('severity', models.CharField(choices=[('info', 'Info'), ('warning', 'Warning'), ('critical', 'Critical')], max_length=16)),
                        ('status', models.CharField(choices=[('open', 'Open'), ('resolved', 'Resolved')], default='open', max_length=16)),
                        ('key', models.CharField(help_text='What differs, e.g. money_out:order:123', max_length=200)),
                        ('summary', models.CharField(max_length=300)),
                        ('details', models.JSONField(blank=True, default=dict)),
                        ('detected_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_seen_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('times_seen', models.PositiveIntegerField(default=1)),
                        ('fix_attempts', models.PositiveIntegerField(default=0)),
                        ('last_fix_at', models.DateTimeField(blank=True, null=True)),
                        ('last_fix_note', models.CharField(blank=True, default='', max_length=500)),
                        ('resolved_at', models.DateTimeField(blank=True, null=True)),
                        ('resolution', models.TextField(blank=True, default='')),
                        ('agency', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='mismatches', to='agencies.agency')),
                        ('customer', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='mismatches', to='customers.customer')),
                        ('last_fix_by', models.ForeignKey(blank=True, help_text='Empty: fixed automatically by reconciliation', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('operation', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='mismatches', to='disbalance.outboxoperation')),
                        ('order', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='mismatches', to='payments.balanceorder')),
                        ('resolved_by', models.ForeignKey(blank=True, help_text='Empty: closed by the system', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('service', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='disbalance.consumerservice')),
                    ],
                    options={
                        'verbose_name_plural': 'mismatches',
                        'db_table': 'balance_gateway_mismatch',
                        'ordering': ['-detected_at', '-id'],
                        'permissions': [('fix_mismatch', 'Can fix a mismatch (re-sync with Balance)'), ('resolve_mismatch', 'Can resolve a mismatch with a comment')],
                        'indexes': [models.Index(fields=['status', 'kind'], name='mismatch_status_kind'), models.Index(fields=['customer', 'status'], name='mismatch_customer_status')],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'open')), fields=('key',), name='mismatch_one_open_per_key'), models.CheckConstraint(condition=models.Q(models.Q(('resolved_at__isnull', True), ('status', 'open')), models.Q(('resolved_at__isnull', False), ('status', 'resolved'), models.Q(('resolution', ''), _negated=True)), _connector='OR'), name='mismatch_resolution_matches_status')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
