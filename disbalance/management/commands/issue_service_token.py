from django.core.management.base import BaseCommand, CommandError

from disbalance.models import ConsumerService
from disbalance.services import service_token_issue


class Command(BaseCommand):
    help = "Issue a new API token for a consumer service. Prints only the token on stdout, once; it is stored hashed."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--label", default="")

    def handle(self, *args, **options):
        service = ConsumerService.objects.filter(slug=options["slug"]).first()
        if service is None:
            raise CommandError(f"no consumer service {options['slug']!r}; create it with create_service first")
        result = service_token_issue(service=service, label=options["label"])
        self.stdout.write(result.raw_token)
        self.stderr.write(f"token {result.token.prefix}… issued for {service.slug}; it will not be shown again")
