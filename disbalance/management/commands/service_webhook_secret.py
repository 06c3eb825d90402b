from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from disbalance.models import ConsumerService
from disbalance.webhooks import standard_secret, webhook_secret_rotate


class Command(BaseCommand):
    help = ("Print a consumer service's webhook signing secret (X-Disbalance-Signature; --standard: the `whsec_` form "
            "for Standard Webhooks libraries); --rotate makes a new one, the old one signing too for --overlap-hours.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--rotate", action="store_true", help="replace the secret (both sign during the overlap)")
        parser.add_argument("--overlap-hours", type=float, default=settings.WEBHOOK_SECRET_OVERLAP_HOURS,
                            help="how long the old secret keeps signing next to the new one (0: stops at once)")
        parser.add_argument("--standard", action="store_true", help="print the secret in the `whsec_` form")

    def handle(self, *args, **options):
        service = ConsumerService.objects.filter(slug=options["slug"]).first()
        if service is None:
            raise CommandError(f"no consumer service {options['slug']!r}")
        if options["rotate"]:
            service = webhook_secret_rotate(service=service, overlap=timedelta(hours=options["overlap_hours"]))
            until = service.webhook_secret_previous_until
            self.stderr.write(f"webhook secret of {service.slug} rotated; the previous one signs too until {until}"
                              if until else f"webhook secret of {service.slug} rotated")
        self.stdout.write(standard_secret(service.webhook_secret) if options["standard"] else service.webhook_secret)
