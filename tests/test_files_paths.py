"""Every client path stays inside the workspace and out of the product's own state:
traversal, absolute paths, symlinks at any depth, a symlink swapped in between the
check and the use, and the data dir / database / secret key / config / .git / .venv / .env."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from codegen_site.core import workspace
from files_app import services
from files_app.models import Backup
from tests.files_helpers import assert_refused, listing, read, write

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


# ---------------------------------------------------------------- traversal and absolute paths

@pytest.mark.parametrize("path", ["../outside/secret.txt", "src/../../outside/secret.txt", "./../outside/secret.txt",
                                  "a/b/../../../outside/secret.txt"])
def test_dot_dot_escapes_are_refused_for_read_and_write(client, ws, outside, path):
    assert_refused(read(client, path))
    assert_refused(write(client, path, "pwned"))
    assert (outside / "secret.txt").read_text() == "SECRET\n"
    assert Backup.objects.count() == 0


def test_dot_dot_that_stays_inside_is_fine(client, ws):
    (ws / "src").mkdir()
    (ws / "top.txt").write_text("top")
    body = read(client, "src/../top.txt").json()
    assert body["content"] == "top" and body["path"] == str(ws / "top.txt")


def test_absolute_path_outside_is_refused_and_nothing_is_created(client, ws, outside):
    assert_refused(read(client, str(outside / "secret.txt")))
    assert_refused(write(client, str(outside / "new.txt"), "x"))
    assert_refused(write(client, "/etc/codegen-test.txt", "x"))
    assert not (outside / "new.txt").exists() and not Path("/etc/codegen-test.txt").exists()


def test_absolute_path_inside_is_accepted(client, ws):
    response = write(client, str(ws / "abs" / "file.txt"), "inside")
    assert response.status_code == 200
    assert (ws / "abs" / "file.txt").read_text() == "inside"


def test_prefix_sibling_of_the_root_is_outside(client, ws):
    # /tmp/x/ws-evil starts with /tmp/x/ws but is not inside it
    sibling = ws.parent / (ws.name + "-evil")
    sibling.mkdir()
    (sibling / "f.txt").write_text("evil")
    assert_refused(read(client, str(sibling / "f.txt")))
    assert_refused(read(client, f"../{sibling.name}/f.txt"))


def test_nul_byte_in_path_is_400(client, ws):
    assert_refused(read(client, "a\x00b"))
    assert_refused(write(client, "a\x00b.txt", "x"))


def test_workspace_root_itself_is_not_a_file(client, ws):
    assert_refused(read(client, "."))
    assert_refused(write(client, ".", "x"))


# ---------------------------------------------------------------- symlinks at any depth

def test_symlinked_file_leading_out_is_refused(client, ws, outside):
    (ws / "link.txt").symlink_to(outside / "secret.txt")
    assert_refused(read(client, "link.txt"))
    assert_refused(write(client, "link.txt", "pwned"))
    assert (outside / "secret.txt").read_text() == "SECRET\n"
    assert (ws / "link.txt").is_symlink()


def test_symlinked_parent_directory_leading_out_is_refused(client, ws, outside):
    (ws / "linked").symlink_to(outside, target_is_directory=True)
    assert_refused(read(client, "linked/secret.txt"))
    assert_refused(write(client, "linked/new.txt", "pwned"))
    assert_refused(write(client, "linked/deeper/new.txt", "pwned"))
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_symlink_deep_in_the_path_leading_out_is_refused(client, ws, outside):
    (ws / "a" / "b").mkdir(parents=True)
    (ws / "a" / "b" / "c").symlink_to(outside, target_is_directory=True)
    assert_refused(read(client, "a/b/c/secret.txt"))
    assert_refused(write(client, "a/b/c/secret.txt", "pwned"))
    assert (outside / "secret.txt").read_text() == "SECRET\n"


def test_relative_symlink_climbing_out_is_refused(client, ws, outside):
    (ws / "up").symlink_to(Path("..") / "outside", target_is_directory=True)
    assert_refused(read(client, "up/secret.txt"))


def test_symlink_that_stays_inside_is_followed_and_writes_the_real_file(client, ws):
    (ws / "real").mkdir()
    (ws / "real" / "f.txt").write_text("one")
    (ws / "alias").symlink_to(ws / "real", target_is_directory=True)
    assert read(client, "alias/f.txt").json()["content"] == "one"
    assert write(client, "alias/f.txt", "two").status_code == 200
    assert (ws / "real" / "f.txt").read_text() == "two"
    assert (ws / "alias").is_symlink()
    assert Backup.objects.get().path == "real/f.txt"


def test_symlink_loop_is_400(client, ws):
    (ws / "a").symlink_to(ws / "b")
    (ws / "b").symlink_to(ws / "a")
    assert_refused(read(client, "a"))
    assert_refused(write(client, "a", "x"))
    assert_refused(write(client, "a/child.txt", "x"))


def test_symlink_into_the_data_dir_is_refused(client, ws, settings):
    settings.DATA_DIR = ws / "data"
    (ws / "data").mkdir()
    (ws / "data" / "secret_key").write_text("k")
    (ws / "innocent").symlink_to(ws / "data", target_is_directory=True)
    assert_refused(read(client, "innocent/secret_key"))


# ---------------------------------------------------------------- the swap race

class Swapper:
    """Swaps a workspace path for a symlink leading out, on its own thread, when told to."""

    def __init__(self, swap):
        self.swap = swap
        self.requested = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        if self.requested.wait(10):
            self.swap()
        self.done.set()

    def after_check(self, real_resolve):
        """A resolve() that lets the swap happen right after the check passed."""

        def resolve(*args, **kwargs):
            resolved = real_resolve(*args, **kwargs)
            self.requested.set()
            assert self.done.wait(10)
            return resolved

        return resolve


def swap_dir_for_link(ws: Path, outside: Path):
    def swap():
        (ws / "sub").rename(ws / "sub-moved")
        (ws / "sub").symlink_to(outside, target_is_directory=True)

    return swap


def swap_file_for_link(ws: Path, outside: Path):
    def swap():
        (ws / "sub" / "secret.txt").unlink()
        (ws / "sub" / "secret.txt").symlink_to(outside / "secret.txt")

    return swap


@pytest.fixture
def race_setup(ws, outside):
    (ws / "sub").mkdir()
    (ws / "sub" / "secret.txt").write_text("inside\n")
    return ws, outside


@pytest.mark.parametrize("make_swap", [swap_dir_for_link, swap_file_for_link])
def test_symlink_swapped_in_after_the_check_is_refused_on_read(client, race_setup, monkeypatch, make_swap):
    ws, outside = race_setup
    swapper = Swapper(make_swap(ws, outside))
    monkeypatch.setattr(workspace, "resolve", swapper.after_check(workspace.resolve))
    response = read(client, "sub/secret.txt")
    assert swapper.done.is_set()
    # The naive open of the checked path now leads out: the race is real.
    assert (ws / "sub" / "secret.txt").read_text() == "SECRET\n"
    assert_refused(response)
    assert "symbolic link" in response.json()["detail"]


@pytest.mark.parametrize("make_swap", [swap_dir_for_link, swap_file_for_link])
def test_symlink_swapped_in_after_the_check_is_refused_on_write(client, race_setup, monkeypatch, make_swap):
    ws, outside = race_setup
    swapper = Swapper(make_swap(ws, outside))
    monkeypatch.setattr(workspace, "resolve", swapper.after_check(workspace.resolve))
    response = write(client, "sub/secret.txt", "pwned")
    assert swapper.done.is_set()
    assert_refused(response)
    assert (outside / "secret.txt").read_text() == "SECRET\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert Backup.objects.count() == 0


def test_symlink_swapped_into_a_new_directory_path_is_refused_on_write(client, ws, outside, monkeypatch):
    # The parent does not exist at check time; a link to the outside appears before the write creates it.
    def swap():
        (ws / "fresh").symlink_to(outside, target_is_directory=True)

    swapper = Swapper(swap)
    monkeypatch.setattr(workspace, "resolve", swapper.after_check(workspace.resolve))
    assert_refused(write(client, "fresh/new.txt", "pwned"))
    assert not (outside / "new.txt").exists()


def test_reads_racing_a_swapping_thread_never_leak(client, race_setup):
    ws, outside = race_setup
    stop = threading.Event()
    swaps = []

    def flip():
        while not stop.is_set():
            (ws / "sub").rename(ws / "sub-real")
            (ws / "sub").symlink_to(outside, target_is_directory=True)
            (ws / "sub").unlink()
            (ws / "sub-real").rename(ws / "sub")
            swaps.append(1)

    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    try:
        outcomes = {}
        for _ in range(300):
            response = read(client, "sub/secret.txt")
            key = response.json().get("content", response.status_code)
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        stop.set()
        thread.join(5)
    assert swaps, "the swapping thread never ran"
    assert "SECRET\n" not in outcomes
    assert set(outcomes) <= {"inside\n", 400, 404}
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


# ---------------------------------------------------------------- the product's own state

@pytest.fixture
def project_as_workspace(settings):
    """The workspace root set to the directory holding this run's data dir and test database,
    so the secret key and the database lie inside it."""
    test_root = Path(os.environ["CODEGEN_TEST_ROOT"]).resolve()
    settings.WORKSPACE_ROOT = test_root
    data_dir = Path(django_settings.DATA_DIR).resolve()
    assert data_dir.parent == test_root and (data_dir / "secret_key").exists()
    database = Path(connection.settings_dict["NAME"]).resolve()
    assert database.parent == test_root and database.exists()
    return test_root, data_dir, database


def test_secret_key_and_database_cannot_be_read(client, project_as_workspace):
    test_root, data_dir, database = project_as_workspace
    for path in ["data/secret_key", str(data_dir / "secret_key"), "data/../data/secret_key", "./data/secret_key",
                 database.name, str(database), "data"]:
        response = read(client, path)
        assert_refused(response)
        assert "off limits" in response.json()["detail"], path
    assert_refused(client.get("/files/tree", {"path": "data"}))
    names = listing(client.get("/files/tree", {"depth": 3}).json())
    assert "data" not in names and database.name not in names


def test_secret_key_and_database_cannot_be_written(client, project_as_workspace):
    test_root, data_dir, database = project_as_workspace
    key_before = (data_dir / "secret_key").read_bytes()
    db_size = database.stat().st_size
    assert_refused(write(client, "data/secret_key", "guessable"))
    assert_refused(write(client, database.name, "junk"))
    assert_refused(write(client, database.name + "-wal", "junk"))
    assert_refused(write(client, "data/backups/xx/new", "junk"))
    assert (data_dir / "secret_key").read_bytes() == key_before
    assert database.stat().st_size == db_size


def test_symlink_to_the_secret_key_is_refused(client, project_as_workspace, tmp_path, settings):
    test_root, data_dir, database = project_as_workspace
    settings.WORKSPACE_ROOT = tmp_path
    (tmp_path / "key").symlink_to(data_dir / "secret_key")
    assert_refused(read(client, "key"))


def test_project_config_git_venv_env_are_off_limits(client, settings):
    """Workspace root = the project's base dir, as in a default install."""
    base = Path(django_settings.BASE_DIR).resolve()
    settings.WORKSPACE_ROOT = base
    assert (base / "config" / "default.toml").exists() and (base / ".git").exists()
    for path in ["config/default.toml", ".git", ".git/HEAD", ".venv/bin/python", ".env", ".env.local",
                 "sub/.git/config", "sub/.env", "pkg/.venv/x"]:
        assert_refused(read(client, path))
        assert "off limits" in read(client, path).json()["detail"], path
    assert_refused(write(client, "config/default.toml", "[llm]\n"))
    assert_refused(write(client, ".env", "SECRET_KEY=x\n"))
    assert_refused(write(client, "sub/.git/hooks/pre-commit", "#!/bin/sh\n"))
    assert not (base / ".env").exists() and not (base / "sub").exists()
    # the project's ordinary files are readable
    assert read(client, "README.md").status_code == 200
    names = listing(client.get("/files/tree", {"depth": 1}).json())
    assert "README.md" in names and "files_app" in names
    assert not {"config", ".git", ".venv", ".env"} & names


def test_off_limits_names_are_refused_by_the_service_api(ws):
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("[core]")
    with pytest.raises(workspace.PathNotAllowed):
        services.read_file(".git/config")
    with pytest.raises(workspace.PathNotAllowed):
        services.write_file("deep/.venv/lib.py", "x")
    assert not (ws / "deep").exists()
