"""Content-Security-Policy and Permissions-Policy on every kind of response."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

CONSOLE_POLICY = {
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "base-uri 'self'",
}


def _directives(response) -> set[str]:
    return {directive.strip() for directive in response["Content-Security-Policy"].split(";")}


@pytest.mark.parametrize(
    "url", ["/console/", "/console/failed/", "/console/login/", "/console/nowhere/", "/admin/", "/healthz"]
)
def test_pages_and_api_answers_carry_both_policies(viewer_client, url):
    response = viewer_client.get(url)
    assert CONSOLE_POLICY <= _directives(response)
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert (
        "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]
    )


def test_the_api_documentation_may_inline_styles_but_not_scripts(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    directives = _directives(response)
    assert "script-src 'self'" in directives and "style-src 'self' 'unsafe-inline'" in directives
    assert "Permissions-Policy" in response


INLINE = re.compile(r"""\sstyle=|<style|<script(?![^>]*\bsrc=)|\son[a-z]+=|javascript:""", re.IGNORECASE)


def test_no_console_template_needs_inline_script_or_style():
    """What the policy would block: the console must not depend on it."""
    offenders = [
        f"{path.relative_to(settings.BASE_DIR)}: {match.group(0).strip()}"
        for path in (Path(settings.BASE_DIR) / "templates").rglob("*.html")
        for match in INLINE.finditer(path.read_text())
    ]
    assert offenders == []
