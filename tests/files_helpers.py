"""Helpers for tests that call the files API (the `ws` and `outside` fixtures are in conftest)."""

from __future__ import annotations

import json


def write(client, path, content, **extra):
    body = {"path": path, "content": content, **extra}
    return client.post("/files/write", json.dumps(body), content_type="application/json")


def read(client, path):
    return client.get("/files/read", {"path": path})


def restore(client, **body):
    return client.post("/files/restore", json.dumps(body), content_type="application/json")


def listing(tree: dict) -> set[str]:
    """Every path in a /files/tree answer."""
    found = set()
    for child in tree.get("children", []):
        found.add(child["path"])
        found |= listing(child)
    return found


def assert_refused(response, status=400):
    assert response.status_code == status, response.content
    assert response.json()["detail"]
