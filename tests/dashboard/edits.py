"""Edit & requeue as the console does it: the edit is previewed as a diff, then confirmed."""

from __future__ import annotations

import json
import re

from ingest.models import DeadLetter

VERSION = re.compile(r'name="version" value="([0-9a-f]+)"')


def edit_preview(client, dead: DeadLetter, edited: dict | str, reason: str = "fix the reading"):
    body = edited if isinstance(edited, str) else json.dumps(edited)
    return client.post(f"/console/failed/{dead.pk}/requeue/", {"edit": "1", "body": body, "reason": reason})


def edit_confirm(client, dead: DeadLetter, edited: dict | str, version: str, reason: str = "fix the reading"):
    body = edited if isinstance(edited, str) else json.dumps(edited)
    return client.post(
        f"/console/failed/{dead.pk}/requeue/",
        {"edit": "1", "confirm": "1", "version": version, "body": body, "reason": reason},
    )


def requeue_edited(client, dead: DeadLetter, edited: dict | str, reason: str = "fix the reading"):
    """Edit, review the diff, confirm: the response of the confirm, or of a refused edit."""
    preview = edit_preview(client, dead, edited, reason)
    version = VERSION.search(preview.content.decode())
    if preview.status_code != 200 or version is None:
        return preview
    return edit_confirm(client, dead, edited, version[1], reason)
