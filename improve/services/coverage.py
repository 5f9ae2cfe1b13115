"""Which workspace tests cover a file: test_<module>.py, or a test file that imports the module
(by its dotted path from the root, by its bare name, or `from parent import module`).

The tests are found and read through the workspace layer (core.workspace lists them, the
files service reads them), like every other look at the user's files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, NotFound
from files_app.services import read_file
from improve.config import run_settings


@dataclass(frozen=True)
class CoveringTest:
    """One test file covering the target: as the API shows it, its path, its text."""

    shown: str
    path: Path
    text: str


def module_names(shown: str) -> list[str]:
    """Names a test may import the file by: its dotted path from the root and its bare name."""
    parts = list(Path(shown).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts:
        return []
    dotted = ".".join(parts)
    return [dotted] if len(parts) == 1 else [dotted, parts[-1]]


def _import_pattern(names: list[str]) -> re.Pattern:
    """Lines importing one of `names`: `import name`, `from name import ...`, `from parent import stem`."""
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    forms = [rf"from[ \t]+(?:{alternatives})[ \t]+import\b", rf"import[ \t]+(?:{alternatives})(?![\w.])"]
    parent, _, stem = names[0].rpartition(".")
    if parent:
        forms.append(rf"from[ \t]+{re.escape(parent)}[ \t]+import[ \t(]+(?:[^\n]*[ ,(])?{re.escape(stem)}\b")
    return re.compile(rf"^[ \t]*(?:{'|'.join(forms)})", re.M)


def is_test_file(name: str) -> bool:
    """pytest's default test file names: test_*.py and *_test.py."""
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def covering_tests(target: Path) -> list[CoveringTest]:
    """The test files covering `target`, test_<module>.py first, at most improve_run.max_covering_tests."""
    shown = workspace.relative(target)
    names = module_names(shown)
    if not names:
        return []
    pattern = _import_pattern(names)
    own_name = f"test_{target.stem}.py"
    matches = []
    for entry in workspace.files(workspace.root(), include=is_test_file):
        if entry.path == shown:
            continue
        try:
            text = read_file(entry.path).content
        except (BadInput, NotFound):
            continue  # binary, too large, or gone since the walk
        if entry.name == own_name or pattern.search(text):
            matches.append((entry.name != own_name, CoveringTest(entry.path, workspace.root() / entry.path, text)))
    matches.sort(key=lambda match: (match[0], match[1].shown))
    return [test for _, test in matches[:run_settings().max_covering_tests]]
