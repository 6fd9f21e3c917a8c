import pytest
from django.test import Client

from tests.factories import UserFactory

OPERATORS = "Console operators"
VIEWERS = "Console viewers"


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(db):
    return UserFactory(username="olivia", role=OPERATORS)


@pytest.fixture
def viewer(db):
    return UserFactory(username="victor", role=VIEWERS)


@pytest.fixture
def operator_client(operator) -> Client:
    return _client_for(operator)


@pytest.fixture
def viewer_client(viewer) -> Client:
    return _client_for(viewer)
