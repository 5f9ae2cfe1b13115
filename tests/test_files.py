"""/files/write, read, backups, restore, tree, diff; atomic writes; backups that never
lose a version (same second, alike names, 50 concurrent writers); retention; the admin."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from codegen_site.core.errors import BadInput
from files_app import selectors, services
from files_app.models import Backup
from files_app.services import store
from tests.files_helpers import read, restore, write

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


def blob(backup: Backup | dict, data_dir: Path) -> bytes:
    stored = backup["backup_path"] if isinstance(backup, dict) else backup.stored_path
    return (data_dir / stored).read_bytes()


@pytest.fixture
def data_dir(ws, settings) -> Path:
    return Path(settings.DATA_DIR)


def temp_litter(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(store.TEMP_PREFIX)]


# ---------------------------------------------------------------- write

def test_write_creates_parents_then_backs_up_what_it_replaces(client, ws, data_dir):
    first = write(client, "src/pkg/module.py", "# one\n")
    assert first.status_code == 200
    assert first.json() == {"success": True, "path": str(ws / "src/pkg/module.py"), "backup_path": None,
                            "created": True, "error": None}
    second = write(client, "src/pkg/module.py", "# two\n").json()
    assert second["created"] is False and second["success"] is True
    digest = hashlib.sha256(b"# one\n").hexdigest()
    assert second["backup_path"] == f"backups/{digest[:2]}/{digest}"
    assert (data_dir / second["backup_path"]).read_bytes() == b"# one\n"
    assert (ws / "src/pkg/module.py").read_text() == "# two\n"
    row = Backup.objects.get()
    assert (row.path, row.sha256, row.size, row.reason) == ("src/pkg/module.py", digest, 6, "write")


def test_write_without_backup_takes_none(client, ws):
    write(client, "a.txt", "one")
    body = write(client, "a.txt", "two", create_backup=False).json()
    assert body["backup_path"] is None and Backup.objects.count() == 0
    assert (ws / "a.txt").read_text() == "two"


def test_write_keeps_the_file_mode(client, ws):
    script = ws / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o751)
    write(client, "run.sh", "#!/bin/sh\necho hi\n")
    assert script.stat().st_mode & 0o7777 == 0o751
    assert temp_litter(ws) == []


def test_write_keeps_exact_bytes_and_unicode(client, ws):
    text = "crlf\r\nno newline — ünïcode ✓"
    write(client, "u.txt", text)
    assert (ws / "u.txt").read_bytes() == text.encode()
    assert read(client, "u.txt").json()["content"] == text


def workspace_temp(fd_or_name, ws: Path) -> bool:
    """True for the workspace temp file a write goes through (not the backup store's copy)."""
    if isinstance(fd_or_name, int):
        try:
            target = os.readlink(f"/proc/self/fd/{fd_or_name}")
        except OSError:
            return False
        return target.startswith(str(ws)) and store.TEMP_PREFIX in target
    return str(fd_or_name).startswith(store.TEMP_PREFIX)


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failure_mid_write_leaves_the_old_content_and_no_temp_file(client, ws, data_dir, monkeypatch, failing):
    (ws / "keep.txt").write_text("old content\n")
    real = getattr(os, failing)
    calls = []

    def broken(first, *args, **kwargs):
        if (failing == "replace" and "src_dir_fd" not in kwargs) or not workspace_temp(first, ws):
            return real(first, *args, **kwargs)
        calls.append(first)
        if failing == "write" and len(calls) == 1:
            return real(first, args[0][:100], **kwargs)  # a part lands, then the disk fails
        raise OSError(errno.EIO, "Input/output error (injected)")

    monkeypatch.setattr(os, failing, broken)
    response = write(client, "keep.txt", "new content that never lands\n" * 100)
    monkeypatch.setattr(os, failing, real)
    assert calls, "the injected failure was never reached"
    assert response.status_code == 500
    assert "Could not write keep.txt" in response.json()["detail"] and "injected" in response.json()["detail"]
    assert (ws / "keep.txt").read_text() == "old content\n"
    assert temp_litter(ws) == []
    # the backup taken before the failure holds the old content too
    assert blob(Backup.objects.get(), data_dir) == b"old content\n"
    assert write(client, "keep.txt", "fine\n").status_code == 200
    assert (ws / "keep.txt").read_text() == "fine\n"


def test_size_limit_is_413_and_nothing_is_written(client, ws, set_config):
    set_config({"files": {"max_file_bytes": 100}})
    (ws / "f.txt").write_text("small")
    response = write(client, "f.txt", "x" * 101)
    assert response.status_code == 413
    assert "101 bytes" in response.json()["detail"] and "100 bytes" in response.json()["detail"]
    assert (ws / "f.txt").read_text() == "small"
    assert write(client, "f.txt", "x" * 100).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"content": "x"}, "path"), ({"path": "a.txt"}, "content"), ({"path": 5, "content": "x"}, "path"),
    ({"path": "a.txt", "content": ["x"]}, "content"), ({"path": "", "content": "x"}, "path"),
    ({"path": "a.txt", "content": "x", "create_backup": "maybe"}, "create_backup"),
])
def test_bad_write_bodies_are_400_detail(client, ws, body, field):
    response = client.post("/files/write", body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_writing_over_a_directory_or_below_a_file_is_400(client, ws):
    (ws / "dir").mkdir()
    (ws / "plain.txt").write_text("x")
    assert "directory" in write(client, "dir", "x").json()["detail"]
    response = write(client, "plain.txt/child.txt", "x")
    assert response.status_code == 400 and "not a directory" in response.json()["detail"]
    assert (ws / "plain.txt").read_text() == "x"


def test_a_failed_backup_copy_leaves_the_old_file_and_records_no_backup(client, ws, data_dir, monkeypatch):
    """The copy into the store runs beside the new content's write: when it fails, the new
    content is not renamed into place and no row points at a blob that is not on disk."""
    (ws / "keep.txt").write_text("old content\n")
    real = os.fsync

    def broken(fd):
        if str(data_dir) in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error (injected)")
        return real(fd)

    monkeypatch.setattr(os, "fsync", broken)
    response = write(client, "keep.txt", "new content\n")
    monkeypatch.setattr(os, "fsync", real)
    assert response.status_code == 500 and "injected" in response.json()["detail"]
    assert (ws / "keep.txt").read_text() == "old content\n"
    assert temp_litter(ws) == [] and temp_litter(data_dir / "backups") == []
    assert not Backup.objects.exists()


# ---------------------------------------------------------------- read

def test_read_returns_the_reference_shape(client, ws):
    (ws / "src").mkdir()
    (ws / "src/module.py").write_text("print('hi')\n")
    body = read(client, "src/module.py").json()
    assert body == {"success": True, "path": str(ws / "src/module.py"), "content": "print('hi')\n", "error": None}


def test_read_missing_is_404(client, ws):
    response = read(client, "nope/missing.py")
    assert response.status_code == 404 and "missing.py" in response.json()["detail"]
    assert read(client, "missing.py").status_code == 404


@pytest.mark.parametrize("payload", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"caf\xe9 latin-1"])
def test_read_binary_is_400(client, ws, payload):
    (ws / "blob.bin").write_bytes(payload)
    response = read(client, "blob.bin")
    assert response.status_code == 400
    assert "binary" in response.json()["detail"]


def test_read_over_the_limit_is_400(client, ws, set_config):
    set_config({"files": {"max_file_bytes": 10}})
    (ws / "big.txt").write_text("x" * 11)
    (ws / "ok.txt").write_text("x" * 10)
    response = read(client, "big.txt")
    assert response.status_code == 400 and "limit" in response.json()["detail"]
    assert read(client, "ok.txt").status_code == 200


def test_read_directory_and_fifo_are_400_without_hanging(client, ws):
    (ws / "d").mkdir()
    os.mkfifo(ws / "pipe")
    assert "directory" in read(client, "d").json()["detail"]
    response = read(client, "pipe")
    assert response.status_code == 400 and "regular file" in response.json()["detail"]


def test_read_of_a_large_file_answers_as_a_small_one(client, ws):
    # Small answers are rendered on the event loop, large ones on a thread: the same JSON.
    from files_app.api import INLINE_RENDER_CHARS

    big = "é = 1  # \"quoted\"\n" * (INLINE_RENDER_CHARS // 10)
    (ws / "big.py").write_text(big)
    response = read(client, "big.py")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == {"success": True, "path": str(ws / "big.py"), "content": big, "error": None}


def test_read_follows_a_workspace_root_replaced_at_the_same_path(client, ws):
    """The root's fd is kept between reads; a new directory at the root's path is opened anew."""
    (ws / "f.py").write_text("first\n")
    assert read(client, "f.py").json()["content"] == "first\n"
    ws.rename(ws.with_name("old-ws"))
    ws.mkdir()
    (ws / "f.py").write_text("second\n")
    assert read(client, "f.py").json()["content"] == "second\n"


def test_reads_without_openat2_answer_and_refuse_the_same(client, ws, outside, monkeypatch):
    """Where the kernel has no openat2 the walk from the root reads instead."""
    from codegen_site.core.workspace import descriptors

    (ws / "src").mkdir()
    (ws / "src/m.py").write_text("m = 1\n")
    (ws / "out").symlink_to(outside, target_is_directory=True)
    answers = []
    for works in (True, False):
        monkeypatch.setattr(descriptors, "_openat2_works", works)
        answers.append([(r.status_code, r.json()) for r in
                        (read(client, "src/m.py"), read(client, "out/secret.txt"), read(client, "src/none.py"),
                         read(client, "src/m.py/x"))])
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [200, 400, 404, 404]


def test_read_needs_a_path(client, ws):
    assert read(client, "").status_code == 400
    assert client.get("/files/read").status_code == 400


# ---------------------------------------------------------------- backups never collide

def test_two_writes_in_the_same_second_keep_both_versions(client, ws, data_dir):
    for content in ("v1", "v2", "v3"):
        write(client, "same.txt", content)
    listed = client.get("/files/backups", {"path": "same.txt"}).json()["backups"]
    assert [blob(row, data_dir) for row in listed] == [b"v2", b"v1"]  # newest first
    assert listed[0]["id"] > listed[1]["id"]
    assert set(listed[0]) == {"id", "path", "backup_path", "size", "sha256", "reason", "created_at"}


def test_files_named_alike_in_different_folders_keep_their_own_backups(client, ws, data_dir):
    for folder in ("a", "b"):
        write(client, f"{folder}/config.py", f"{folder} old")
        write(client, f"{folder}/config.py", f"{folder} new")
    for folder in ("a", "b"):
        (row,) = client.get("/files/backups", {"path": f"{folder}/config.py"}).json()["backups"]
        assert row["path"] == f"{folder}/config.py" and blob(row, data_dir) == f"{folder} old".encode()
    assert len(client.get("/files/backups").json()["backups"]) == 2


def test_identical_content_is_stored_once(client, ws, data_dir):
    for name in ("one.py", "two.py", "three.py"):
        write(client, name, "shared = True\n")
        write(client, name, f"{name} changed\n")
    rows = list(Backup.objects.all())
    assert len(rows) == 3 and len({row.stored_path for row in rows}) == 1
    blobs = [p for p in (data_dir / "backups").rglob("*") if p.is_file() and p.name != ".lock"]
    assert len(blobs) == 1
    totals = selectors.backup_totals()
    assert totals == {"backups": 3, "files": 3, "version_bytes": 3 * 14, "blobs": 1, "stored_bytes": 14}


def test_backups_filter_accepts_absolute_paths_and_lists_newest_first(client, ws):
    write(client, "x.py", "1")
    write(client, "x.py", "2")
    write(client, "y.py", "1")
    write(client, "y.py", "2")
    everything = client.get("/files/backups").json()["backups"]
    assert [row["path"] for row in everything] == ["y.py", "x.py"]
    by_absolute = client.get("/files/backups", {"path": str(ws / "x.py")}).json()["backups"]
    assert [row["path"] for row in by_absolute] == ["x.py"]
    assert client.get("/files/backups", {"path": "../etc"}).status_code == 400
    assert client.get("/files/backups", {"limit": 1}).json()["backups"][0]["path"] == "y.py"


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_writes_to_one_file_leave_fifty_recoverable_versions(ws, data_dir):
    (ws / "hot.txt").write_text("version 0\n")
    versions = {f"version {n}\n" for n in range(1, 51)}
    errors = []
    start = threading.Barrier(50)

    def writer(content):
        try:
            start.wait()
            services.write_file("hot.txt", content)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(content,)) for content in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    rows = list(Backup.objects.filter(path="hot.txt"))
    assert len(rows) == 50
    recovered = {blob(row, data_dir).decode() for row in rows} | {(ws / "hot.txt").read_text()}
    assert recovered == versions | {"version 0\n"}
    assert temp_litter(ws) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_in_many_folders_each_keep_their_backup(ws, data_dir):
    errors = []

    def writer(n):
        try:
            services.write_file(f"dir{n}/file.txt", f"old {n}")
            services.write_file(f"dir{n}/file.txt", f"new {n}")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert {row.path: blob(row, data_dir) for row in Backup.objects.all()} == {
        f"dir{n}/file.txt": f"old {n}".encode() for n in range(30)}


# ---------------------------------------------------------------- restore

def test_restore_round_trip_and_undo(client, ws, data_dir):
    write(client, "app.py", "good\n")
    write(client, "app.py", "broken\n")
    (good,) = client.get("/files/backups", {"path": "app.py"}).json()["backups"]
    response = restore(client, backup_id=good["id"])
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["restored_from"] == good["id"] and body["created"] is False
    assert body["path"] == str(ws / "app.py")
    assert (ws / "app.py").read_text() == "good\n"
    # the restore backed up what it replaced, with reason "restore"
    undo = Backup.objects.get(pk=body["backup_id"])
    assert undo.reason == "restore" and blob(undo, data_dir) == b"broken\n"
    assert body["backup_path"] == undo.stored_path
    # restoring that backup undoes the restore
    assert restore(client, backup_path=body["backup_path"]).status_code == 200
    assert (ws / "app.py").read_text() == "broken\n"


def test_restore_by_absolute_backup_path_into_another_file(client, ws, data_dir):
    write(client, "orig.py", "v1")
    backup_path = write(client, "orig.py", "v2").json()["backup_path"]
    body = restore(client, backup_path=str(data_dir / backup_path), original_path="copies/orig_v1.py").json()
    assert body["created"] is True and body["backup_path"] is None
    assert (ws / "copies/orig_v1.py").read_text() == "v1" and (ws / "orig.py").read_text() == "v2"


def test_restore_of_a_deleted_file_recreates_it(client, ws):
    write(client, "gone.py", "v1")
    write(client, "gone.py", "v2")
    (ws / "gone.py").unlink()
    backup_id = Backup.objects.get().id
    assert restore(client, backup_id=backup_id).json()["created"] is True
    assert (ws / "gone.py").read_text() == "v1"


@pytest.mark.parametrize("body, status", [
    ({}, 400), ({"backup_id": 1, "backup_path": "backups/aa/bb"}, 400), ({"backup_id": "x"}, 400),
    ({"backup_id": 999999}, 404), ({"backup_path": "backups/00/0000"}, 404), ({"backup_path": "/etc/passwd"}, 404),
    ({"backup_path": "../../etc/passwd"}, 404),
])
def test_restore_bad_input(client, ws, body, status):
    response = restore(client, **body)
    assert response.status_code == status and response.json()["detail"]


def test_restore_into_a_path_outside_is_400_and_writes_nothing(client, ws, tmp_path):
    write(client, "f.py", "v1")
    write(client, "f.py", "v2")
    response = restore(client, backup_id=Backup.objects.get().id, original_path="../escaped.py")
    assert response.status_code == 400
    assert not (tmp_path / "escaped.py").exists()


def test_restore_of_a_damaged_or_pruned_blob_is_refused(client, ws, data_dir):
    write(client, "f.py", "v1")
    write(client, "f.py", "v2")
    row = Backup.objects.get()
    (data_dir / row.stored_path).write_bytes(b"tampered")
    response = restore(client, backup_id=row.id)
    assert response.status_code == 409 and "checksum" in response.json()["detail"]
    (data_dir / row.stored_path).unlink()
    assert restore(client, backup_id=row.id).status_code == 404
    assert (ws / "f.py").read_text() == "v2"


# ---------------------------------------------------------------- diff

def test_diff_of_a_backup_against_the_current_file(client, ws):
    write(client, "d.py", "a = 1\nb = 2\n")
    write(client, "d.py", "a = 1\nb = 3\n")
    backup_id = Backup.objects.get().id
    body = client.get("/files/diff", {"backup_id": backup_id}).json()
    assert body["changed"] is True and body["current_exists"] is True and body["path"] == "d.py"
    assert body["diff"].splitlines() == ["--- a/d.py", "+++ b/d.py", "@@ -1,2 +1,2 @@", " a = 1", "-b = 2", "+b = 3"]
    write(client, "d.py", "a = 1\nb = 2\n", create_backup=False)
    assert client.get("/files/diff", {"backup_id": backup_id}).json() == {
        "backup_id": backup_id, "path": "d.py", "diff": "", "changed": False, "current_exists": True}


def test_diff_marks_a_missing_newline_and_a_deleted_file(client, ws):
    write(client, "n.txt", "last")
    write(client, "n.txt", "last\n")
    backup_id = Backup.objects.get().id
    assert "\\ No newline at end of file" in client.get("/files/diff", {"backup_id": backup_id}).json()["diff"]
    (ws / "n.txt").unlink()
    body = client.get("/files/diff", {"backup_id": backup_id}).json()
    assert body["current_exists"] is False and "+++ /dev/null" in body["diff"] and "-last" in body["diff"]


def test_diff_unknown_backup_is_404_and_bad_id_400(client, ws):
    assert client.get("/files/diff", {"backup_id": 424242}).status_code == 404
    assert client.get("/files/diff", {"backup_id": "x"}).status_code == 400
    assert client.get("/files/diff").status_code == 400


# ---------------------------------------------------------------- tree

def paths_of(node: dict) -> list[str]:
    found = []
    for child in node.get("children", []):
        found.append(child["path"])
        found += paths_of(child)
    return found


def test_tree_lists_names_sizes_kinds_and_respects_gitignore(client, ws):
    (ws / "src/pkg").mkdir(parents=True)
    (ws / "src/pkg/mod.py").write_text("x = 1\n")
    (ws / "src/pkg/mod.pyc").write_bytes(b"\x00")
    (ws / "build").mkdir()
    (ws / "build/out.o").write_text("o")
    (ws / "debug.log").write_text("log")
    (ws / "keep.log").write_text("log")
    (ws / ".gitignore").write_text("build/\n*.log\n!keep.log\n*.pyc\n")
    (ws / "src/.gitignore").write_text("generated_*\n")
    (ws / "src/generated_api.py").write_text("g")
    (ws / "src/README.md").write_text("readme")
    (ws / ".git").mkdir()
    (ws / ".git/HEAD").write_text("ref")
    (ws / ".venv").mkdir()
    (ws / ".env").write_text("TOKEN=x")
    (ws / "link").symlink_to("/etc", target_is_directory=True)
    tree = client.get("/files/tree", {"depth": 3}).json()
    assert tree["path"] == "." and tree["kind"] == "dir" and tree["truncated"] is False
    assert paths_of(tree) == ["src", "src/pkg", "src/pkg/mod.py", "src/.gitignore",
                              "src/README.md", ".gitignore", "keep.log", "link"]
    by_path = {}

    def index(node):
        for child in node.get("children", []):
            by_path[child["path"]] = child
            index(child)

    index(tree)
    assert by_path["src/pkg/mod.py"]["size"] == 6 and by_path["src/pkg/mod.py"]["kind"] == "file"
    assert by_path["link"]["kind"] == "symlink" and "children" not in by_path["link"]
    assert by_path["src"]["kind"] == "dir" and by_path["src"]["size"] is None


def test_tree_depth_and_subdirectory(client, ws):
    (ws / "a/b/c").mkdir(parents=True)
    (ws / "a/b/c/deep.txt").write_text("d")
    shallow = client.get("/files/tree", {"depth": 1}).json()
    assert paths_of(shallow) == ["a"] and "children" not in shallow["children"][0]
    sub = client.get("/files/tree", {"path": "a/b", "depth": 2}).json()
    assert sub["path"] == "a/b" and paths_of(sub) == ["a/b/c", "a/b/c/deep.txt"]


def test_tree_honours_an_ancestor_gitignore_when_listing_a_subdirectory(client, ws):
    (ws / "pkg").mkdir()
    (ws / "pkg/a.py").write_text("a")
    (ws / "pkg/a.tmp").write_text("t")
    (ws / ".gitignore").write_text("*.tmp\n")
    assert paths_of(client.get("/files/tree", {"path": "pkg"}).json()) == ["pkg/a.py"]


def test_tree_is_cut_at_the_entry_limit(client, ws, set_config):
    set_config({"files": {"tree_max_entries": 5}})
    for n in range(10):
        (ws / f"f{n}.txt").write_text("x")
    tree = client.get("/files/tree").json()
    assert tree["truncated"] is True and tree["entries"] == 5 and len(tree["children"]) == 5


@pytest.mark.parametrize("query, status", [({"depth": 0}, 400), ({"depth": 99}, 400), ({"depth": "x"}, 400),
                                           ({"path": "missing"}, 404), ({"path": "../"}, 400),
                                           ({"path": "file.txt"}, 400)])
def test_tree_bad_input(client, ws, query, status):
    (ws / "file.txt").write_text("x")
    assert client.get("/files/tree", query).status_code == status


# ---------------------------------------------------------------- retention

def test_prune_keeps_the_newest_per_file_or_the_recent_ones(ws, data_dir):
    for n in range(6):
        services.write_file("old.py", f"old {n}")
    Backup.objects.filter(path="old.py").update(created_at=timezone.now() - timedelta(days=100))
    for n in range(6):
        services.write_file("young.py", f"young {n}")
    assert Backup.objects.filter(path="old.py").count() == 5
    newest_old = list(Backup.objects.filter(path="old.py").order_by("-id").values_list("id", flat=True)[:2])
    result = services.prune_backups(keep_last=2, keep_days=30)
    assert result.deleted_backups == 3 and result.kept_backups == 7
    assert sorted(Backup.objects.filter(path="old.py").values_list("id", flat=True)) == sorted(newest_old)
    assert Backup.objects.filter(path="young.py").count() == 5  # younger than 30 days
    assert result.deleted_blobs == 3
    for row in Backup.objects.all():
        assert (data_dir / row.stored_path).exists()


def test_prune_never_deletes_a_blob_another_backup_still_uses(ws, data_dir):
    services.write_file("a.py", "shared")
    services.write_file("a.py", "a2")
    Backup.objects.update(created_at=timezone.now() - timedelta(days=100))
    services.write_file("b.py", "shared")
    services.write_file("b.py", "b2")
    services.write_file("a.py", "a3")
    old_a = Backup.objects.filter(path="a.py").order_by("id").first()
    result = services.prune_backups(keep_last=1, keep_days=30)
    assert not Backup.objects.filter(id=old_a.id).exists() and result.deleted_backups == 1
    kept_b = Backup.objects.get(path="b.py")
    assert kept_b.stored_path == old_a.stored_path
    assert (data_dir / kept_b.stored_path).read_bytes() == b"shared"
    assert result.deleted_blobs == 0


def test_prune_rules_off_and_dry_run(ws, data_dir):
    for n in range(4):
        services.write_file("f.py", f"{n}")
    Backup.objects.update(created_at=timezone.now() - timedelta(days=100))
    assert services.prune_backups(keep_last=0, keep_days=0).deleted_backups == 0  # both off: keep all
    dry = services.prune_backups(keep_last=1, keep_days=0, dry_run=True)
    assert (dry.deleted_backups, dry.deleted_blobs, dry.kept_backups) == (2, 2, 1)
    assert Backup.objects.count() == 3 and len(list(store.stored_files())) == 3
    assert services.prune_backups(keep_last=0, keep_days=30).deleted_backups == 3  # only the age rule


def test_prune_command_uses_the_config_defaults(ws, set_config):
    set_config({"files": {"backup_keep_last": 1, "backup_keep_days": 0}})
    for n in range(4):
        services.write_file("f.py", f"{n}")
    out = StringIO()
    call_command("prune_backups", stdout=out)
    assert out.getvalue().startswith("Deleted 2 backups and 2 stored blobs")
    assert Backup.objects.count() == 1
    call_command("prune_backups", "--dry-run", "--keep-last", "5", stdout=out)
    assert "Would delete 0 backups" in out.getvalue()


def test_prune_removes_orphan_blobs_and_leftover_temp_files(ws, data_dir):
    services.write_file("f.py", "v1")
    services.write_file("f.py", "v2")
    orphan = data_dir / store.stored_path_for("f" * 64)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan")
    (data_dir / "backups" / f"{store.TEMP_PREFIX}x{store.TEMP_SUFFIX}").write_bytes(b"half")
    result = services.prune_backups(keep_last=0, keep_days=0)
    assert result.deleted_blobs == 2 and not orphan.exists()
    assert (data_dir / Backup.objects.get().stored_path).exists()


# ---------------------------------------------------------------- admin, schema, service API

def test_admin_lists_backups_with_search_and_totals(admin_client, ws):
    services.write_file("src/alpha.py", "a1")
    services.write_file("src/alpha.py", "a2")
    services.write_file("lib/beta.py", "b1")
    services.write_file("lib/beta.py", "b2", reason="improve")
    page = admin_client.get("/admin/files_app/backup/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "src/alpha.py" in html and "lib/beta.py" in html
    assert "2 backups of 2 files" in html and "2 distinct contents stored" in html
    found = admin_client.get("/admin/files_app/backup/", {"q": "alpha"}).content.decode()
    assert "src/alpha.py" in found and "lib/beta.py" not in found
    filtered = admin_client.get("/admin/files_app/backup/", {"reason__exact": "improve"}).content.decode()
    assert "lib/beta.py" in filtered and "src/alpha.py" not in filtered
    detail = admin_client.get(f"/admin/files_app/backup/{Backup.objects.first().pk}/change/")
    assert detail.status_code == 200


def test_service_api_for_the_improve_app(ws):
    result = services.write_file("mod.py", "v1", reason="improve")
    assert result.created and result.backup is None and result.relative_path == "mod.py"
    result = services.write_file("mod.py", b"v2", reason="improve")
    assert result.backup.reason == "improve" and result.backup_path == result.backup.stored_path
    assert services.read_file("mod.py").content == "v2"
    assert [row.reason for row in selectors.list_backups("mod.py")] == ["improve"]
    with pytest.raises(BadInput):
        services.write_file("mod.py", "v3", reason="whim")


def test_openapi_schema_documents_the_files_endpoints():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    for path in ("/files/write:", "/files/read:", "/files/backups:", "/files/restore:", "/files/tree:",
                 "/files/diff:"):
        assert f"\n  {path}" in schema, path


def test_oversized_request_body_is_413_not_500(client, ws, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = write(client, "big.txt", "x" * 20_000)
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    assert not (ws / "big.txt").exists()


def test_overlong_path_is_400(client, ws):
    deep = "/".join(["d" * 200] * 6) + "/f.txt"
    response = write(client, deep, "x")
    assert response.status_code == 400 and "no more than 1024 characters" in response.json()["detail"]
    # the service holds the resolved form to the same bound (a short link can expand into a long path)
    (ws / "short").symlink_to(ws / "/".join(["d" * 200] * 5), target_is_directory=True)
    with pytest.raises(BadInput, match="longer than 1024"):
        services.write_file("short/" + "f" * 100, "x")
    assert sorted(p.name for p in ws.iterdir()) == ["short"]


def test_lone_surrogates_in_content_or_path_are_400(client, ws):
    for body in ('{"path": "s.txt", "content": "bad \\ud800 text"}', '{"path": "bad\\udcff.txt", "content": "x"}'):
        response = client.post("/files/write", body, content_type="application/json")
        assert response.status_code == 400 and "surrogate" in response.json()["detail"].lower()
    # the service refuses them too, for callers that skip the serializer
    with pytest.raises(BadInput, match="Unicode"):
        services.write_file("s.txt", "bad \ud800 text")
    with pytest.raises(BadInput, match="Unicode"):
        services.write_file("bad\udcff.txt", "x")
    assert list(ws.iterdir()) == []


def test_tree_shows_a_name_that_is_not_utf8(client, ws):
    (ws / "ok.txt").write_text("x")
    os.close(os.open(os.path.join(os.fsencode(ws), b"caf\xe9.txt"), os.O_CREAT | os.O_WRONLY, 0o644))
    response = client.get("/files/tree")
    assert response.status_code == 200
    assert sorted(paths_of(response.json())) == ["caf\ufffd.txt", "ok.txt"]


def test_names_too_long_for_the_file_system_are_400_not_500(client, ws):
    name = "n" * 300
    assert client.get("/files/tree", {"path": name}).status_code == 400
    assert read(client, name).status_code == 400
    assert write(client, name, "x").status_code == 400
    assert write(client, f"{name}/f.txt", "x").status_code == 400


def test_below_a_file_is_not_found_when_reading(client, ws):
    (ws / "plain.txt").write_text("x")
    assert read(client, "plain.txt/child").status_code == 404
    assert client.get("/files/tree", {"path": "plain.txt/child"}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_writers_in_two_processes_each_keep_the_version_they_replace(live_asgi, tmp_path, settings):
    """The server and another process (as the queue worker is) writing one file at once."""
    import uuid

    import httpx

    shared = tmp_path / "shared"
    shared.mkdir()
    settings.WORKSPACE_ROOT = shared  # the data dir stays the run's, which the server uses too
    server = live_asgi({"CODEGEN_WORKSPACE_ROOT": str(shared), "CODEGEN_SECURITY__RATE_ANON": "100000/minute"})
    (shared / "both.txt").write_text("start\n")
    run = uuid.uuid4().hex
    remote = [f"remote {n} {run}\n" for n in range(15)]
    local = [f"local {n} {run}\n" for n in range(15)]
    failures = []

    def through_the_server():
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for content in remote:
                response = http.post("/files/write", json={"path": "both.txt", "content": content})
                if response.status_code != 200:
                    failures.append(response.text)

    def in_this_process():
        try:
            for content in local:
                services.write_file("both.txt", content)
        except Exception as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=through_the_server), threading.Thread(target=in_this_process)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    rows = list(Backup.objects.filter(path="both.txt"))
    assert len(rows) == 30
    recovered = {blob(row, Path(settings.DATA_DIR)).decode() for row in rows} | {(shared / "both.txt").read_text()}
    assert recovered == set(remote) | set(local) | {"start\n"}
    assert "Traceback" not in server.log()
