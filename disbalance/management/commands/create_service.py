from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from disbalance.services import service_create


class Command(BaseCommand):
    help = "Create a consumer service, or update it if it exists (idempotent by slug)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--balance-service-id", type=int, required=True)
        parser.add_argument("--currency", default="RUB")
        parser.add_argument("--webhook-url", default=None)
        parser.add_argument("--webhook-secret", default=None)

    def handle(self, *args, **options):
        try:
            result = service_create(
                slug=options["slug"], name=options["name"], balance_service_id=options["balance_service_id"],
                currency=options["currency"], webhook_url=options["webhook_url"],
                webhook_secret=options["webhook_secret"],
            )
        except ValidationError as exc:
            raise CommandError(f"invalid service: {exc.message_dict}") from exc
        if result.created:
            self.stderr.write(self.style.SUCCESS(f"created service {result.service.slug}"))
        elif result.changed:
            self.stderr.write(f"updated service {result.service.slug}: {', '.join(result.changed)}")
        else:
            self.stderr.write(f"service {result.service.slug} already up to date")
