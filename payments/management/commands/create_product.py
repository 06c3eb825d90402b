from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from disbalance.models import ConsumerService
from payments.models import Product
from payments.services import product_create


class Command(BaseCommand):
    help = "Create a product in a service's catalog, or update it (idempotent by code)."

    def add_arguments(self, parser):
        parser.add_argument("service_slug")
        parser.add_argument("code")
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", required=True, choices=[k for k, _ in Product.Kind.choices])
        parser.add_argument("--balance-product-id", type=int, required=True)

    def handle(self, *args, **options):
        service = ConsumerService.objects.filter(slug=options["service_slug"]).first()
        if service is None:
            raise CommandError(f"no consumer service {options['service_slug']!r}")
        try:
            result = product_create(service=service, code=options["code"], name=options["name"],
                                    kind=options["kind"], balance_product_id=options["balance_product_id"])
        except ValidationError as exc:
            raise CommandError(f"invalid product: {exc.message_dict}") from exc
        if result.created:
            self.stderr.write(self.style.SUCCESS(f"created product {service.slug}:{result.product.code}"))
        elif result.changed:
            self.stderr.write(f"updated product {service.slug}:{result.product.code}: {', '.join(result.changed)}")
        else:
            self.stderr.write(f"product {service.slug}:{result.product.code} already up to date")
