from django.core.management.base import BaseCommand, CommandError

from disbalance.models import ConsumerService
from disbalance.services import service_webhook_secret_rotate


class Command(BaseCommand):
    help = "Print a consumer service's webhook signing secret (for X-Disbalance-Signature); --rotate makes a new one."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--rotate", action="store_true", help="replace the secret; the old one stops at once")

    def handle(self, *args, **options):
        service = ConsumerService.objects.filter(slug=options["slug"]).first()
        if service is None:
            raise CommandError(f"no consumer service {options['slug']!r}")
        if options["rotate"]:
            service = service_webhook_secret_rotate(service=service)
            self.stderr.write(f"webhook secret of {service.slug} rotated")
        self.stdout.write(service.webhook_secret)
