"""factory-boy factories for the customer's tables and the app's own."""

import factory

from ingest.models import Device, DeviceStatus, DeviceType, Resident


class ResidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Resident

    full_name = factory.Faker("name")
    phone = factory.Faker("numerify", text="+44 7### ######")


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    serial_no = factory.Sequence(lambda n: f"DEV-{n:06d}")
    device_type = DeviceType.VITAL
    resident = factory.SubFactory(ResidentFactory)
    status = DeviceStatus.ACTIVE
