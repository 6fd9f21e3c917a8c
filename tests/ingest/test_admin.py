"""Operators configure webhook sources in the admin; the secret is never shown back."""

import pytest
from django.contrib.auth import get_user_model

from ingest.models import WebhookSource
from tests.webhooks import TEST_SECRET

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", password="pw-for-tests-1")
    client.force_login(user)
    return client


def test_a_source_is_created_and_its_secret_is_not_rendered_back(staff_client):
    response = staff_client.post(
        "/admin/ingest/webhooksource/add/",
        {"name": "carelink", "secret": TEST_SECRET, "is_enabled": "on"},
    )
    assert response.status_code == 302
    source = WebhookSource.objects.get(name="carelink")
    assert source.secret == TEST_SECRET
    page = staff_client.get(f"/admin/ingest/webhooksource/{source.pk}/change/")
    assert page.status_code == 200
    assert TEST_SECRET.encode() not in page.content


def test_editing_without_a_secret_keeps_the_old_one(staff_client):
    source = WebhookSource.objects.create(name="carelink", secret="keep-me")
    staff_client.post(
        f"/admin/ingest/webhooksource/{source.pk}/change/",
        {"name": "carelink", "secret": "", "is_enabled": ""},
    )
    source.refresh_from_db()
    assert (source.secret, source.is_enabled) == ("keep-me", False)


def test_a_new_source_without_a_secret_is_refused(staff_client):
    response = staff_client.post("/admin/ingest/webhooksource/add/", {"name": "x", "secret": ""})
    assert response.status_code == 200
    assert b"A new source needs a secret." in response.content
    assert not WebhookSource.objects.exists()


@pytest.mark.parametrize(
    ("secret", "error"),
    [
        ("topsecret-123", "must start with &#x27;whsec_&#x27;"),
        ("whsec_not base64!", "must be base64"),
        ("whsec_c2hvcnQ=", "24 to 64 bytes; it encodes 5"),
    ],
)
def test_a_secret_that_is_not_a_standard_webhooks_secret_is_refused(staff_client, secret, error):
    response = staff_client.post("/admin/ingest/webhooksource/add/", {"name": "x", "secret": secret})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not WebhookSource.objects.exists()


def test_the_admin_requires_staff(client):
    response = client.get("/admin/ingest/webhooksource/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
