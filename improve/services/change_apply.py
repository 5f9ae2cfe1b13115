"""Applying a proven ProjectChange to the user's files, and undoing it in one step.

Both set-ups write through the files service (backup reason "improve"), only the changed files,
only when each still holds what the proposal read (409 otherwise, nothing written); a failed
write puts back the files already written.

- git workspace: the user's branch gets the change's commit — fast-forward when the branch is still
  where the change was built and every file is applied, else a new commit on the branch's tip
  carrying the chosen files (409 when the branch changed those files since). Only those paths are
  written and staged; the user's other uncommitted and staged work is not touched. A changed file
  with uncommitted or staged edits of the user's is 409 (commit or stash them first). The ref moves
  with its old value checked (services.change_git). Undo: when the branch tip is still the applied
  commit, the branch goes back to its parent (history as it was); otherwise a revert commit, 409
  when a later commit changed those files. The files come back from their backups.
- no git: the files are written with backups; undo restores every backup (a file the change created
  is removed, after a backup of it) as one operation.

An improvement applied through POST /improve/apply is a one-file change too (services.improvement_apply):
undoing it puts its run back to `proposed`."""

from __future__ import annotations

import ast
import difflib
import os

from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, Conflict, NotFound
from codegen_site.core.users import visible
from files_app.models import Backup
from files_app.services import restore, unified_diff, write_file
from improve.models import ImprovementRun, ProjectChange
from improve.services.apply import sha256_text
from improve.services.change_context import read_text
from improve.services.change_git import Repo, open_repo

State = ProjectChange.State


def get_change(change_id) -> ProjectChange:
    try:
        return visible(ProjectChange.objects).get(pk=change_id)
    except (ProjectChange.DoesNotExist, ValueError):
        raise NotFound(f"No project change {change_id}") from None


def _unchanged(item: dict, expected_sha: str, what: str) -> None:
    current = read_text(item["path"])
    if (current is None and expected_sha) or (current is not None and sha256_text(current) != expected_sha):
        raise Conflict(f"{item['path']} changed since {what}; nothing was written")


def _remove(path: str) -> None:
    """A file the change created, removed through the workspace layer after a backup of it."""
    current = read_text(path)
    if current is None:
        return
    write_file(path, current, reason=Backup.Reason.RESTORE)  # keeps what is removed
    target = workspace.resolve(path)
    with workspace.open_dir_for_write(target.parent) as dir_fd:
        os.unlink(target.name, dir_fd=dir_fd)


def _write_all(items: list[dict]) -> list[dict]:
    """Every item's proposal written with a backup; on a failure the written ones are put back."""
    done: list[dict] = []
    try:
        for item in items:
            written = write_file(item["path"], item["proposed"], reason=Backup.Reason.IMPROVE)
            done.append({"path": item["path"], "backup_id": written.backup.id if written.backup else None,
                         "created": written.created})
    except BaseException:
        _put_back(done)
        raise
    return done


def _put_back(backups: list[dict]) -> None:
    for entry in reversed(backups):
        if entry["created"]:
            _remove(entry["path"])
        elif entry["backup_id"] is not None:
            restore(backup_id=entry["backup_id"])


def clean_in_git(repo: Repo, head: str, items: list[dict]) -> None:
    """409 unless each path's index entry and file are as HEAD has them (no uncommitted work there)."""
    for item in items:
        committed = repo.blob(head, item["path"])
        if repo.staged(item["path"]) != committed:
            raise Conflict(f"{item['path']} has staged changes; commit or unstage them first")
        current = read_text(item["path"])
        working = repo.hash_text(current, write=False) if current is not None else None
        if working != (committed[1] if committed else None):
            raise Conflict(f"{item['path']} has uncommitted changes; commit or stash them first")


def _claim(change: ProjectChange, source: str, target: str) -> None:
    if not ProjectChange.objects.filter(pk=change.pk, state=source).update(state=target):
        raise Conflict(f"This change is no longer {source}")


def partial_text(original: str, proposed: str, selected: set[int]) -> str:
    """`original` with only the `selected` hunks of its diff to `proposed` (the hunks files_app's
    unified_diff shows, in order: difflib's groups with 3 lines of context)."""
    old, new = original.splitlines(keepends=True), proposed.splitlines(keepends=True)
    out: list[str] = []
    position = 0
    for index, group in enumerate(difflib.SequenceMatcher(None, old, new).get_grouped_opcodes(3)):
        if index in selected:
            out += old[position:group[0][1]] + new[group[0][3]:group[-1][4]]
            position = group[-1][2]
    return "".join(out + old[position:])


def _hunk_count(item: dict) -> int:
    old, new = (item.get("original") or "").splitlines(True), item["proposed"].splitlines(True)
    return sum(1 for _ in difflib.SequenceMatcher(None, old, new).get_grouped_opcodes(3))


def _chosen_hunks(items: list[dict], hunks: dict[str, list[int]]) -> list[dict]:
    """Each item with `hunks` naming a part of its hunks carries only those: its `proposed` text is
    the original with them, recorded as `applied`/`applied_sha256` (undo checks that text)."""
    chosen = []
    for item in items:
        selection = hunks.get(item["path"])
        count = _hunk_count(item)
        if selection is not None:
            wrong = sorted(index for index in set(selection) if index >= count)
            if wrong:
                raise BadInput(f"{item['path']} has {count} hunks; no hunk {', '.join(map(str, wrong))}")
        if selection is None or set(selection) >= set(range(count)):
            chosen.append(item)
            continue
        text = partial_text(item.get("original") or "", item["proposed"], set(selection))
        chosen.append({**item, "proposed": text, "proposed_sha256": sha256_text(text),
                       "applied_hunks": sorted(set(selection))})
    return chosen


def _edited(items: list[dict], edits: dict[str, str], hunks: dict[str, list[int]]) -> list[dict]:
    """Each item the user edited before applying carries the user's content instead of the proposal's.
    The tests are not run again: the file is marked `edited` (and listed in the evidence's
    `edited_by_user`) so nobody reads the proposal's proof as the edit's. A Python file that does not
    parse is refused (400): that much is checked at once, without the sandbox."""
    paths = {item["path"] for item in items}
    unknown = [path for path in edits if path not in paths]
    if unknown:
        raise BadInput(f"Not files being applied: {', '.join(unknown)}")
    both = [path for path in edits if path in hunks]
    if both:
        raise BadInput(f"Give either hunks or an edit for a file, not both: {', '.join(both)}")
    edited = []
    for item in items:
        text = edits.get(item["path"])
        if text is None:
            edited.append(item)
            continue
        if item["path"].endswith(".py"):
            try:
                ast.parse(text, filename=item["path"])
            except SyntaxError as exc:
                raise BadInput(f"The edited {item['path']} does not parse: line {exc.lineno}: {exc.msg}") from None
        edited.append({**item, "proposed": text, "proposed_sha256": sha256_text(text), "edited": True})
    return edited


def _as_applied(item: dict) -> dict:
    """A file of the change as it was applied (only some of its hunks, or all)."""
    if "applied" not in item:
        return item
    return {**item, "proposed": item["applied"], "proposed_sha256": item["applied_sha256"]}


def _repo_of(change: ProjectChange, done: str) -> Repo | None:
    """The workspace's repository for a change made in git (409 when it is one no more), else None."""
    if not change.git:
        return None
    repo = open_repo(workspace.root())
    if repo is None:
        raise Conflict(f"The workspace is no longer the git repository the change was {done} in")
    return repo


def apply_change(change_id, files: list[str] | None = None, hunks: dict[str, list[int]] | None = None,
                 edits: dict[str, str] | None = None) -> ProjectChange:
    """POST /improve/change/{id}/apply: every file of the change, or the subset named; of a file
    named in `hunks`, only those hunks; a file named in `edits` gets the user's content instead."""
    change = get_change(change_id)
    if change.state != State.PROPOSED:
        raise Conflict(f"This change cannot be applied (state {change.state})")
    known = {item["path"]: item for item in change.files}
    if files:
        unknown = [path for path in files if path not in known]
        if unknown:
            raise BadInput(f"Not files of this change: {', '.join(unknown)}")
    items = [known[path] for path in dict.fromkeys(files)] if files else list(change.files)
    if hunks:
        unknown = [path for path in hunks if path not in {item["path"] for item in items}]
        if unknown:
            raise BadInput(f"Not files being applied: {', '.join(unknown)}")
        items = _chosen_hunks(items, hunks)
    if edits:
        items = _edited(items, edits, hunks or {})
    partial = any("applied_hunks" in item or item.get("edited") for item in items)
    for item in items:
        _unchanged(item, item["original_sha256"], "the proposal was made")
    repo = _repo_of(change, "made")
    _claim(change, State.PROPOSED, State.APPLIED)
    try:
        if repo is not None:
            _apply_git(repo, change, items, every=len(items) == len(change.files) and not partial)
        else:
            change.backups = _write_all(items)
    except BaseException:
        ProjectChange.objects.filter(pk=change.pk).update(state=State.PROPOSED)
        raise
    change.state, change.applied_at = State.APPLIED, timezone.now()
    change.applied_files = [item["path"] for item in items]
    applied = {item["path"]: item for item in items if "applied_hunks" in item or item.get("edited")}
    change.files = [{key: value for key, value in item.items() if key not in ("applied", "applied_sha256",
                                                                               "applied_hunks", "edited")}
                    for item in change.files]
    for item in change.files:
        if item["path"] in applied:
            chosen = applied[item["path"]]
            item.update(applied=chosen["proposed"], applied_sha256=chosen["proposed_sha256"])
            if "applied_hunks" in chosen:
                item["applied_hunks"] = chosen["applied_hunks"]
            if chosen.get("edited"):
                item["edited"] = True
    edited = [item for item in items if item.get("edited")]
    change.evidence = {**change.evidence, "edited_by_user": [
        {"path": item["path"], "sha256": item["proposed_sha256"],
         "diff_from_proposal": unified_diff(known[item["path"]]["proposed"], item["proposed"], item["path"])}
        for item in edited]}
    change.save()
    return change


def _apply_git(repo: Repo, change: ProjectChange, items: list[dict], *, every: bool) -> None:
    branch, head = repo.branch(), repo.head()
    if not branch:
        raise Conflict("HEAD is detached; check out a branch to apply the change onto")
    clean_in_git(repo, head, items)
    paths = [item["path"] for item in items]
    if head != change.base_commit:
        moved = [path for path in paths if repo.blob(head, path) != repo.blob(change.base_commit, path)]
        if moved:
            raise Conflict(f"{branch} changed {', '.join(moved)} since the proposal; make the change again")
    entries = {path: repo.blob(change.commit, path) for path in paths}
    for item in items:
        if "applied_hunks" in item or item.get("edited"):  # some hunks, or the user's edit: its own blob
            mode = (entries[item["path"]] or ("100644", ""))[0]
            entries[item["path"]] = (mode, repo.hash_text(item["proposed"], write=True))
    if head == change.base_commit and every:
        commit = change.commit
    else:
        message = repo.run("log", "-1", "--format=%B", change.commit)
        edited = [item["path"] for item in items if item.get("edited")]
        message += "\n\nFiles: " + ", ".join(paths) if not every else ""
        message += "\nEdited by the user before applying (not tested again): " + ", ".join(edited) if edited else ""
        commit = repo.commit(head, entries, message)
    previous = {path: repo.blob(head, path) for path in paths}
    change.backups = _write_all(items)
    try:
        repo.stage(entries)
        repo.move_branch(branch, commit, head)
    except BaseException:
        repo.stage(previous)
        _put_back(change.backups)
        raise
    change.applied_branch, change.applied_commit = branch, commit


def undo_change(change_id) -> ProjectChange:
    """POST /improve/change/{id}/undo: the applied files back as they were, in one step."""
    change = get_change(change_id)
    if change.state != State.APPLIED:
        raise Conflict(f"Only an applied change can be undone (state {change.state})")
    known = {item["path"]: _as_applied(item) for item in change.files}
    items = [known[path] for path in change.applied_files]
    for item in items:
        _unchanged(item, item["proposed_sha256"], "the change was applied (later work depends on it)")
    repo = _repo_of(change, "applied")
    _claim(change, State.APPLIED, State.UNDONE)
    try:
        if repo is not None:
            _undo_git(repo, change, items)
        else:
            _put_back(change.backups)
    except BaseException:
        ProjectChange.objects.filter(pk=change.pk).update(state=State.APPLIED)
        raise
    change.state, change.undone_at = State.UNDONE, timezone.now()
    change.save()
    # an improvement applied as this change (POST /improve/apply) is a proposal again: its file is back
    ImprovementRun.objects.filter(change=change, status=ImprovementRun.Status.APPLIED).update(
        status=ImprovementRun.Status.PROPOSED, change=None, backup_path="")
    return change


def _undo_git(repo: Repo, change: ProjectChange, items: list[dict]) -> None:
    branch, head = repo.branch(), repo.head()
    if branch != change.applied_branch:
        raise Conflict(f"The change was applied on {change.applied_branch}; check it out to undo the change")
    clean_in_git(repo, head, items)
    paths = [item["path"] for item in items]
    parent = repo.run("rev-parse", f"{change.applied_commit}^")
    if head == change.applied_commit:
        target = parent
    else:
        if not repo.ok("merge-base", "--is-ancestor", change.applied_commit, head):
            raise Conflict(f"The applied commit is no longer on {branch}")
        if repo.touched_since(change.applied_commit, head, paths):
            raise Conflict(f"Later commits on {branch} change {', '.join(paths)}; they depend on this change")
        message = f"Revert \"codegen: {change.instruction.strip().splitlines()[0][:60]}\"\n\n" \
                  f"This reverts commit {change.applied_commit}.\n"
        target = repo.commit(head, {path: repo.blob(parent, path) for path in paths}, message)
        change.undo_commit = target
    entries = {path: repo.blob(target, path) for path in paths}
    previous = {path: repo.blob(head, path) for path in paths}
    _put_back(change.backups)
    try:
        repo.stage(entries)
        repo.move_branch(branch, target, head)
    except BaseException:
        repo.stage(previous)
        _write_all(items)
        raise
