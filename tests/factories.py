"""factory-boy factories shared by the test suites (extend freely)."""

from __future__ import annotations

import factory

from agencies.models import Agency
from balance_gateway.models import RegistrationStatus
from customers.models import Customer
from disbalance.models import ConsumerService


class ConsumerServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsumerService
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"service{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    balance_service_id = factory.Sequence(lambda n: 1000 + n)
    currency = "RUB"


class AgencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agency

    service = factory.SubFactory(ConsumerServiceFactory)
    external_id = factory.Sequence(lambda n: f"agency:{n}")
    name = factory.Sequence(lambda n: f"Agency {n} LLC")
    email = factory.LazyAttribute(lambda o: f"{o.external_id.replace(':', '-')}@agency.example")
    inn = "7701234567"
    kpp = "770101001"
    long_name = factory.LazyAttribute(lambda o: f"Limited Liability Company {o.name}")
    legal_address = "Moscow, Tverskaya 1"
    postal_address = "Moscow, Tverskaya 1"
    postcode = "125009"
    status = RegistrationStatus.ACTIVE
    balance_client_id = factory.Sequence(lambda n: 5_000_000 + n)
    balance_person_id = factory.Sequence(lambda n: 6_000_000 + n)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    service = factory.SubFactory(ConsumerServiceFactory)
    external_id = factory.Sequence(lambda n: f"dealer:{20100 + n}")
    kind = Customer.Kind.COMPANY
    name = factory.Sequence(lambda n: f"Dealer {n}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id.replace(':', '-')}@dealer.example")
    inn = "7707654321"
    kpp = "770701001"
    long_name = factory.LazyAttribute(lambda o: f"Limited Liability Company {o.name}")
    legal_address = "Moscow, Lenina 2"
    postal_address = "Moscow, Lenina 2"
    postcode = "119334"
    status = RegistrationStatus.ACTIVE
    balance_client_id = factory.Sequence(lambda n: 1_000_000 + n)
    balance_person_id = factory.Sequence(lambda n: 2_000_000 + n)
    agency = None
