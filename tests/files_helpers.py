"""Shared fixtures for the files tests: a private workspace and data dir per test.
Import the *_fixture names into a test module to use `ws` and `outside`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(name="ws")
def ws_fixture(tmp_path, settings) -> Path:
    """The workspace root for one test; its data dir sits beside it (tmp_path/data)."""
    root = tmp_path / "ws"
    root.mkdir()
    settings.WORKSPACE_ROOT = root
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    return root


@pytest.fixture(name="outside")
def outside_fixture(tmp_path) -> Path:
    """A directory beside the workspace holding a file no client may reach."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("SECRET\n")
    return directory


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
