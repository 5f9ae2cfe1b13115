"""What the model reads before changing the project: the files to change and the files around them,
within the model's context window: `gather` is given the tokens the files may take (the window less the
answer, the instruction and a repair's feedback, services.change.files_budget) and a counter (the model's
own tokenizer, or the LLM layer's calibrated estimate); a file that does not fit is left out whole, named
in the prompt and in the result, and the next, smaller ones may still fit.

The project's symbol map comes from `ast` over its Python files, read through the workspace layer
(nothing is imported or run): which module defines which top-level names, and which modules import
which. The files chosen, in order, until the budget is spent:

1. the paths the request names;
2. the files defining a name the instruction mentions (`slugify`, `Cart.total`, `utils.py`);
3. the modules those import from the project, and the files importing them (tests included), since
   a change to a definition reaches its callers.

The code search (rag) is another app; improve does not import it (the apps stand alone), so the
instruction's own words and the symbol map lead the way."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, NotFound, ServiceError
from files_app.services import read_file
from improve.services.coverage import is_test_file, module_names
from rag.services import retrieve

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_./]*")


@dataclass
class Module:
    path: str
    text: str
    defines: set[str] = field(default_factory=set)
    imports: set[str] = field(default_factory=set)      # dotted names and their prefixes


@dataclass
class SymbolMap:
    modules: dict[str, Module] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)  # dotted module name → path

    def importers(self, path: str) -> list[str]:
        names = set(module_names(path))
        return sorted(other.path for other in self.modules.values()
                      if other.path != path and other.imports & names)

    def imported(self, path: str) -> list[str]:
        module = self.modules.get(path)
        if module is None:
            return []
        return sorted({self.by_name[name] for name in module.imports if name in self.by_name} - {path})


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            dotted = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in dotted:
            parts = name.split(".")
            names |= {".".join(parts[:length]) for length in range(1, len(parts) + 1)}
    return names


def symbol_map(max_files: int) -> SymbolMap:
    found = SymbolMap()
    for entry in workspace.files(workspace.root(), include=lambda name: name.endswith(".py"), limit=max_files)[
            :max_files]:
        try:
            text = read_file(entry.path).content
            tree = ast.parse(text)
        except (BadInput, NotFound, SyntaxError, ValueError):
            continue
        module = Module(entry.path, text, imports=_imports(tree))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                module.defines.add(node.name)
            elif isinstance(node, ast.Assign):
                module.defines |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        found.modules[entry.path] = module
        for name in module_names(entry.path):
            found.by_name.setdefault(name, entry.path)
    return found


@dataclass
class Context:
    """The files put before the model, in order, and why each is there."""

    files: dict[str, str]                 # path → current text
    reasons: dict[str, str]
    left_out: list[str]
    symbols: int
    project: SymbolMap
    tokens: dict[str, int] = field(default_factory=dict)      # path → its tokens, shown or left out
    budget: int = 0                                            # tokens the files could take

    def summary(self) -> list[dict]:
        return [{"path": path, "reason": self.reasons[path], "chars": len(text), "tokens": self.tokens.get(path, 0)}
                for path, text in self.files.items()]

    def left_out_summary(self) -> list[dict]:
        return [{"path": path, "reason": self.reasons.get(path, ""), "tokens": self.tokens.get(path, 0)}
                for path in self.left_out]


def gather(instruction: str, paths: list[str], *, budget: int, max_files: int,
           count: Callable[[str], int] = len) -> Context:
    """The files in the order above, each whole while `count` of them stays within `budget`."""
    project = symbol_map(max_files)
    ordered: list[tuple[str, str]] = []
    for path in paths:
        ordered.append((path, "named in the request"))
    words = {word.strip("./") for word in WORD.findall(instruction)}
    stems = {Path(word).stem for word in words if word.endswith(".py")} | {word.split(".")[0] for word in words}
    mentioned = [module.path for module in project.modules.values()
                 if module.defines & (words | {word.split(".")[-1] for word in words})
                 or Path(module.path).stem in stems or module.path in words]
    mentioned.sort(key=lambda path: (is_test_file(Path(path).name), path))
    ordered += [(path, "defines a name the instruction mentions") for path in mentioned]
    seeds = [path for path, _ in ordered]
    for path in seeds:
        ordered += [(other, f"imported by {path}") for other in project.imported(path)]
        ordered += [(other, f"imports {path}") for other in project.importers(path)]
    ordered += [(path, "the code search's match for the instruction") for path in searched(instruction)]
    files: dict[str, str] = {}
    reasons: dict[str, str] = {}
    tokens: dict[str, int] = {}
    left_out: list[str] = []
    used = 0
    for path, reason in ordered:
        if path in files or path in left_out:
            continue
        text = project.modules[path].text if path in project.modules else read_text(path)
        if text is None:
            continue
        # the file's header line in the prompt counts too (services.change._prompt)
        tokens[path] = count(f"--- {path} [blocks] ({text.count(chr(10))} lines; {reason})\n```python\n{text}```")
        reasons[path] = reason
        if used + tokens[path] > budget:
            left_out.append(path)
            continue
        files[path] = text
        used += tokens[path]
    return Context(files, reasons, left_out, sum(len(module.defines) for module in project.modules.values()), project,
                   tokens, budget)


def searched(instruction: str, top_k: int = 5) -> list[str]:
    """Files holding the code search's best chunks for the instruction, best first (none when
    nothing is indexed, nothing is relevant or the embedder does not answer)."""
    try:
        chunks = retrieve(instruction, top_k=top_k)
    except ServiceError:
        return []
    return list(dict.fromkeys(chunk["path"] for chunk in chunks))


def read_text(path: str) -> str | None:
    try:
        return read_file(path).content
    except (BadInput, NotFound):
        return None
