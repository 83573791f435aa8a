"""factory_boy factories. Rows are made through the services, as the application makes them.

StaffFactory(role=roles.OPS)              # an Ops user, in the Ops group
StaffFactory(role=roles.ADMIN, password="s3cret-pass-phrase")
CustomerFactory()                         # a customer who may sign in with PASSWORD
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from adminsite import roles, services

PASSWORD = "test-pass-phrase-2026"


class _UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = PASSWORD


class StaffFactory(_UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    role = roles.SUPPORT_AGENT

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return services.create_staff_user(actor=None, **kwargs)


class CustomerFactory(_UserFactory):
    username = factory.Sequence(lambda n: f"customer{n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return services.create_customer(actor=None, **kwargs)
