"""The part of the workspace a validation run needs, rebuilt inside the sandbox's run directory.

The sandbox runs one `code` string as solution.py and one pytest file as test_solution.py.
A covering test imports the module under test by its own name, and both may import other
workspace modules; so the run gets a copy of those files: the module under test (current
or proposed content) and every workspace module reachable from it and from the test
through imports, at the paths Python would find them. The copy travels as the `code`
string: a short script, imported by the sandbox before the test module's body runs, that
writes the files beside itself. (A sandbox call that places files in the run directory
would take `files` as it is.)

Imports are resolved against the test file's directory and the workspace root, the two
places pytest's default import mode and a project-root run look in."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, NotFound
from files_app.services import read_file

# Names the sandbox itself uses in the run directory.
SANDBOX_NAMES = {"solution.py", "impl.py", "test_solution.py", "pytest.ini", "conftest.py"}

WRITER = '''"""Writes the files a validation needs beside this one (see improve/services/workspace_copy.py)."""


def _write_copy(files):
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    for relative, text in files.items():
        target = os.path.join(here, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)


_write_copy({payload})
del _write_copy
__import__("importlib").invalidate_caches()  # the run directory's listing changed after it was cached
'''


@dataclass
class WorkspaceCopy:
    """Files for a run: run-directory path → text, the module under test at `module_paths`."""

    texts: dict[str, str] = field(default_factory=dict)
    module_paths: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def writer(self, module_text: str) -> str:
        """The `code` for the sandbox: writes the copy with the module under test holding `module_text`."""
        texts = {**self.texts, **{path: module_text for path in self.module_paths}}
        return WRITER.format(payload=repr(texts))


def _module_file(base: Path, parts: tuple[str, ...]) -> Path | None:
    directory = base.joinpath(*parts)
    if workspace.is_regular_file(directory / "__init__.py"):
        return directory / "__init__.py"
    module = directory.parent / f"{parts[-1]}.py"
    return module if workspace.is_regular_file(module) else None


def _imported(tree: ast.AST, package: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Dotted names an import statement may load, each as parts (prefixes included)."""
    names: list[tuple[str, ...]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [tuple(alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.level - 1 > len(package):
                    continue
            else:
                base = ()
            module = base + (tuple(node.module.split(".")) if node.module else ())
            if module:
                names.append(module)
            names += [module + (alias.name,) for alias in node.names if alias.name != "*"]
    expanded = []
    for parts in names:
        expanded += [parts[:length] for length in range(1, len(parts) + 1)]
    return list(dict.fromkeys(expanded))


def _read(path: Path) -> str | None:
    try:
        return read_file(workspace.relative(path)).content
    except (BadInput, NotFound):
        return None


def build(target: Path, test_file: Path | None, *, max_files: int, max_bytes: int) -> WorkspaceCopy:
    """The copy for validating `target` (with `test_file` run as the sandbox's test file)."""
    root = workspace.root()
    bases = ([test_file.parent] if test_file and test_file.parent != root else []) + [root]
    copy = WorkspaceCopy()
    total = 0
    pending: list[tuple[Path, Path]] = []

    def add(path: Path, base: Path) -> None:
        nonlocal total
        relative = path.relative_to(base).as_posix()
        if relative in copy.texts or relative in copy.module_paths or relative in copy.skipped:
            return
        if relative in SANDBOX_NAMES or workspace.is_off_limits(path) or path == test_file:
            copy.skipped.append(relative)
            return
        if path == target:
            copy.module_paths.append(relative)
        else:
            text = _read(path)
            if text is None or len(copy.texts) >= max_files or total + len(text) > max_bytes:
                copy.skipped.append(relative)
                return
            copy.texts[relative] = text
            total += len(text)
        pending.append((path, base))
        for depth in range(1, len(path.relative_to(base).parts)):  # enclosing packages
            init = base.joinpath(*path.relative_to(base).parts[:depth]) / "__init__.py"
            if workspace.is_regular_file(init):
                add(init, base)

    add(target, root)
    if test_file is not None:
        pending.append((test_file, test_file.parent))
    while pending:
        path, base = pending.pop()
        text = _read(path)
        try:
            tree = ast.parse(text or "")
        except SyntaxError:
            continue
        package = tuple(path.relative_to(base).parts[:-1])
        for parts in _imported(tree, package):
            for candidate_base in bases:
                found = _module_file(candidate_base, parts)
                if found is not None:
                    add(found, candidate_base)
                    break
    return copy
