"""The model's edits to several files, in the format that suits each file, applied tolerantly.

A short file is asked for whole; a long one as search/replace blocks (the model copies a few
lines and says what they become, instead of retyping hundreds). The reply holds one section
per file:

    FILE: path/to/short.py
    ```python
    <the complete new content>
    ```

    EDIT: path/to/long.py
    <<<<<<< SEARCH
    <lines as they are now>
    =======
    <what they become>
    >>>>>>> REPLACE

A search block is found exactly first, then with trailing whitespace ignored, then with the
indentation ignored (the replacement re-indented by the same amount), then as the most similar
region of the same number of lines (at least `near_match_ratio`). A block found nowhere, or found
twice, is an EditError whose message names the file, the block and the closest lines: it goes
back to the model as the repair prompt."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

SECTION = re.compile(r"^[ \t]*(?:#+[ \t]*)?(FILE|EDIT)[ \t]*:[ \t]*`?([^\s`]+)`?[ \t]*$", re.M)
FENCE = re.compile(r"```[\w+-]*[ \t]*\n(.*?)^```", re.S | re.M)
BLOCK = re.compile(r"^<{5,9} ?SEARCH[ \t]*\n(.*?)^={5,9}[ \t]*\n(.*?)^>{5,9} ?REPLACE[ \t]*$", re.S | re.M)


class EditError(ValueError):
    """An edit that could not be applied; the message is written for the model to repair it."""


@dataclass
class FileEdit:
    """One file's edit as the model gave it: a whole new content, or search/replace blocks."""

    path: str
    kind: str                                     # "whole" | "blocks"
    content: str = ""
    blocks: list[tuple[str, str]] = field(default_factory=list)


def parse(reply: str) -> list[FileEdit]:
    """The edits in a reply, in order; the same path twice merges its blocks. EditError when none."""
    edits: dict[str, FileEdit] = {}
    marks = list(SECTION.finditer(reply or ""))
    for index, mark in enumerate(marks):
        body = reply[mark.end(): marks[index + 1].start() if index + 1 < len(marks) else len(reply)]
        path = mark.group(2).strip().removeprefix("./")
        if mark.group(1) == "FILE":
            fence = FENCE.search(body)
            if fence is None:
                raise EditError(f"FILE: {path} has no ```python block holding the complete new content.")
            edits[path] = FileEdit(path, "whole", content=_ending(fence.group(1)))
        else:
            blocks = [(search, replace) for search, replace in BLOCK.findall(body)]
            if not blocks:
                raise EditError(f"EDIT: {path} has no <<<<<<< SEARCH / ======= / >>>>>>> REPLACE block.")
            if path in edits and edits[path].kind == "blocks":
                edits[path].blocks += blocks
            else:
                edits[path] = FileEdit(path, "blocks", blocks=blocks)
    if not edits:
        raise EditError("The reply has no FILE: or EDIT: section, so nothing was changed. Give each file's "
                        "change under `FILE: <path>` (complete content) or `EDIT: <path>` (search/replace blocks).")
    return list(edits.values())


def _ending(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _windows(lines: list[str], size: int):
    for start in range(0, len(lines) - size + 1):
        yield start, lines[start: start + size]


def _find(lines: list[str], search: list[str], key) -> list[int]:
    wanted = [key(line) for line in search]
    return [start for start, window in _windows(lines, len(search)) if [key(line) for line in window] == wanted]


def apply_block(text: str, search: str, replace: str, *, near_ratio: float, where: str) -> str:
    """`text` with the one region matching `search` replaced; EditError saying why not."""
    if not search.strip():
        if not text.strip():
            return _ending(replace)
        raise EditError(f"{where}: the SEARCH part is empty; copy the lines to replace from the file.")
    if text.count(search) == 1:
        return text.replace(search, replace, 1)
    lines = text.splitlines(keepends=True)
    wanted = search.splitlines(keepends=True)
    new = _ending(replace).splitlines(keepends=True) if replace else []
    while wanted and not wanted[-1].strip():
        wanted.pop()
    for key, shift in ((str.rstrip, False), (str.strip, True)):
        found = _find(lines, wanted, key)
        if len(found) > 1:
            raise EditError(f"{where}: the SEARCH lines occur {len(found)} times (lines "
                            f"{', '.join(str(start + 1) for start in found[:5])}); include more lines so they "
                            f"match once.")
        if found:
            start = found[0]
            if shift:
                new = _reindent(new, wanted, lines[start: start + len(wanted)])
            return "".join(lines[:start] + new + lines[start + len(wanted):])
    best, best_start = 0.0, -1
    for start, window in _windows(lines, len(wanted)):
        ratio = difflib.SequenceMatcher(None, "".join(window), "".join(wanted), autojunk=False).ratio()
        if ratio > best:
            best, best_start = ratio, start
    if best >= near_ratio:
        return "".join(lines[:best_start] + new + lines[best_start + len(wanted):])
    closest = ""
    if best_start >= 0:
        shown = "".join(lines[best_start: best_start + len(wanted)])
        closest = (f" The closest lines ({best_start + 1}-{best_start + len(wanted)}, {best:.0%} alike) are:\n"
                   f"{shown}")
    raise EditError(f"{where}: the SEARCH lines were not found in the file.{closest}\nCopy the SEARCH lines "
                    f"exactly from the file's current content.")


def _reindent(new: list[str], wanted: list[str], found: list[str]) -> list[str]:
    """The replacement moved by the indentation the matched region has over the search block."""
    have = next((_indent(line) for line in found if line.strip()), "")
    gave = next((_indent(line) for line in wanted if line.strip()), "")
    if have == gave:
        return new
    if have.startswith(gave):
        extra = have[len(gave):]
        return [extra + line if line.strip() else line for line in new]
    if gave.startswith(have):
        cut = len(gave) - len(have)
        return [line[cut:] if line[:cut].strip() == "" else line.lstrip() for line in new]
    return new


def apply_edit(edit: FileEdit, current: str | None, *, near_ratio: float) -> str:
    """The new content of one file (`current` None: the file does not exist yet)."""
    if edit.kind == "whole":
        return edit.content
    text = current or ""
    for number, (search, replace) in enumerate(edit.blocks, start=1):
        text = apply_block(text, search, replace, near_ratio=near_ratio,
                           where=f"EDIT: {edit.path}, block {number}")
    return text
