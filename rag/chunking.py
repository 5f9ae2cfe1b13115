"""Split a file into chunks that follow the code: Python at top-level functions and classes, a long
class at its methods, a long function into overlapping pieces; other text by lines with overlap.

Every chunk of a piece of a class or function starts with the signature lines of what encloses it
(`class Form(BaseForm):` / `def clean(self):`), so a piece read alone still says where it is; its
line numbers are those of the piece itself. Every loop advances by at least one line, so any input
ends (a line step is never below one, whatever chunk_lines and overlap are)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
    ".tsx": "typescript", ".jsx": "javascript", ".html": "html", ".htm": "html", ".css": "css",
    ".scss": "css", ".md": "markdown", ".rst": "rst", ".txt": "text", ".json": "json", ".toml": "toml",
    ".yaml": "yaml", ".yml": "yaml", ".ini": "ini", ".cfg": "ini", ".sh": "shell", ".sql": "sql",
    ".go": "go", ".rs": "rust", ".java": "java", ".c": "c", ".h": "c", ".cpp": "cpp", ".hpp": "cpp",
    ".rb": "ruby", ".php": "php", ".xml": "xml", ".po": "gettext",
}


@dataclass
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int
    symbol: str
    text: str  # what is embedded, searched and shown: enclosing signatures, then the lines
    # Set while chunking: the enclosing signature lines, and whether this is a whole small unit
    # (a short definition or gap) that may share a chunk with its neighbours.
    header: tuple = ()
    whole: bool = False


IDENTIFIER_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
DEFINITION = re.compile(r"\s*(async\s+def|def|class)\s")
DOCSTRING_QUOTES = ('"""', "'''")


def words_of(name: str) -> str:
    """`django/contrib/auth/hashers.py` → `django contrib auth hashers py`;
    `PBKDF2PasswordHasher.encode` → `PBKDF2 Password Hasher encode`."""
    return " ".join(IDENTIFIER_PART.findall(name))


def symbol_words(symbol: str) -> str:
    """`Paginator.count, Paginator.num_pages` → `Paginator: count, num pages`."""
    names = [name for name in symbol.split(", ") if name]
    if not names:
        return ""
    parents = {name.rpartition(".")[0] for name in names}
    if len(parents) == 1 and next(iter(parents)):
        return f"{words_of(next(iter(parents)))}: " + ", ".join(words_of(name.rpartition(".")[2]) for name in names)
    return ", ".join(words_of(name) for name in names)


# Code lines the embedding model reads after a chunk's outline (None: all of them, up to the token limit).
CODE_LINES = 0


def embedding_text(path: str, chunk: Chunk, code_lines: int | None = CODE_LINES) -> str:
    """What the embedding model reads of a chunk: what says what the chunk is about, in words. A small
    model reads only its first tokens (embeddings.embedded_max_tokens) and reads words better than code,
    so the text is the file's path and the chunk's symbols split into words, then for Python each
    definition's signature, decorators, the first paragraph of its docstring and the comments, in their
    order: the chunk's outline. The code itself follows only for a chunk with no outline (module-level
    statements), or its first `code_lines` lines; the lexical index reads all of it. Other text is read
    as it is, after the path."""
    head = f"{words_of(PurePosixPath(path).with_suffix('').as_posix())}. {symbol_words(chunk.symbol)}".strip(". ")
    if language_of(path) != "python":
        return f"{head}\n{chunk.text}"
    outline, rest = [], []
    quote, first_paragraph = "", False
    for line in chunk.text.splitlines():
        stripped = line.strip()
        if quote:  # inside a docstring
            if not stripped.replace(quote, ""):
                first_paragraph = False
            (outline if first_paragraph else rest).append(stripped.replace(quote, "").strip())
            if quote in stripped:
                quote = ""
            continue
        opening = next((mark for mark in DOCSTRING_QUOTES if stripped.lstrip("rbuRBU").startswith(mark)), "")
        if opening:
            body = stripped.lstrip("rbuRBU")[3:]
            outline.append(body.replace(opening, "").strip())
            quote = "" if opening in body else opening
            first_paragraph = True
        elif DEFINITION.match(line) or stripped.startswith("@"):
            outline.append(stripped)
        elif stripped.startswith("#"):
            outline.append(stripped.lstrip("#").strip())
        elif stripped:
            rest.append(stripped)
    outline = [line for line in outline if line]
    rest = [line for line in rest if line]
    if outline and code_lines is not None:
        rest = rest[:code_lines]
    return "\n".join([head, *outline, *rest])


def language_of(path: str) -> str:
    return LANGUAGES.get(PurePosixPath(path).suffix.lower(), "text")


class Chunker:
    def __init__(self, chunk_lines: int, overlap: int):
        self.chunk_lines = max(1, chunk_lines)
        self.step = max(1, self.chunk_lines - max(0, overlap))

    def chunk(self, path: str, text: str) -> list[Chunk]:
        lines = text.splitlines()
        if language_of(path) == "python":
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError):
                tree = None
            if tree is not None:
                return self._merge([chunk for chunk in self._python(tree, lines) if chunk.text.strip()], lines)
        return [chunk for chunk in self._by_lines(lines, 1, len(lines), "", []) if chunk.text.strip()]

    # --- plain lines ---------------------------------------------------------
    def _by_lines(self, lines: list[str], first: int, last: int, symbol: str, header: list[str]) -> list[Chunk]:
        """Lines first..last (1-based, inclusive) in pieces of chunk_lines sharing the overlap."""
        chunks = []
        start = first
        while start <= last:
            end = min(last, start + self.chunk_lines - 1)
            body = lines[start - 1:end]
            chunks.append(Chunk(start, end, symbol, "\n".join(header + body), tuple(header),
                                whole=start == first and end == last))
            if end >= last:
                break
            start += self.step
        return chunks

    def _merge(self, chunks: list[Chunk], lines: list[str]) -> list[Chunk]:
        """Neighbouring small units under the same header share a chunk up to chunk_lines: fewer, fuller
        chunks (a class of many one-line methods is not a hundred chunks to embed)."""
        merged: list[Chunk] = []
        for chunk in chunks:
            last = merged[-1] if merged else None
            if (last is not None and last.whole and chunk.whole and last.header == chunk.header
                    and chunk.end_line - last.start_line + 1 <= self.chunk_lines):
                symbol = _join_symbols(last.symbol, chunk.symbol)
                body = lines[last.start_line - 1:chunk.end_line]
                merged[-1] = Chunk(last.start_line, chunk.end_line, symbol, "\n".join(list(last.header) + body),
                                   last.header, whole=True)
            else:
                merged.append(chunk)
        return merged

    # --- Python --------------------------------------------------------------
    def _python(self, tree: ast.Module, lines: list[str]) -> list[Chunk]:
        chunks: list[Chunk] = []
        gap_start = 1  # first line not yet covered by a definition
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            first = _first_line(node)
            if first > gap_start:
                chunks.extend(self._by_lines(lines, gap_start, first - 1, "", []))
            chunks.extend(self._definition(node, lines, "", []))
            gap_start = node.end_lineno + 1
        if gap_start <= len(lines):
            chunks.extend(self._by_lines(lines, gap_start, len(lines), "", []))
        return chunks

    def _definition(self, node, lines: list[str], prefix: str, header: list[str]) -> list[Chunk]:
        symbol = f"{prefix}{node.name}"
        first, last = _first_line(node), node.end_lineno
        if last - first + 1 <= self.chunk_lines:
            return [Chunk(first, last, symbol, "\n".join(header + lines[first - 1:last]), tuple(header), whole=True)]
        own_header = header + _signature(node, lines)
        if isinstance(node, ast.ClassDef):
            return self._class_body(node, lines, symbol, own_header)
        return self._by_lines(lines, first, last, symbol, header)[:1] + \
            self._by_lines(lines, first, last, symbol, own_header)[1:]

    def _class_body(self, node: ast.ClassDef, lines: list[str], symbol: str, header: list[str]) -> list[Chunk]:
        """A long class: its methods (and nested classes) one by one, the lines between them by lines."""
        chunks: list[Chunk] = []
        gap_start = _first_line(node)
        for child in node.body:
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            first = _first_line(child)
            if first > gap_start:
                # The class line itself is in the first gap; later gaps carry it as header.
                gap_header = [] if gap_start == _first_line(node) else header
                chunks.extend(self._by_lines(lines, gap_start, first - 1, symbol, gap_header))
            chunks.extend(self._definition(child, lines, f"{symbol}.", header))
            gap_start = child.end_lineno + 1
        if gap_start <= node.end_lineno:
            chunks.extend(self._by_lines(lines, gap_start, node.end_lineno, symbol, header))
        return chunks


def _join_symbols(*symbols: str) -> str:
    """"A, A.b" + "A.c" → "A.b, A.c": a class named beside its own members adds nothing."""
    names = list(dict.fromkeys(name for text in symbols for name in text.split(", ") if name))
    return ", ".join(name for name in names if not any(other.startswith(name + ".") for other in names))


def _first_line(node) -> int:
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno] + [decorator.lineno for decorator in decorators])


def _signature(node, lines: list[str]) -> list[str]:
    """The lines from `def`/`class` to the one that ends the signature (before the body)."""
    body_first = node.body[0].lineno if node.body else node.lineno
    end = max(node.lineno, body_first - 1)
    if end - node.lineno > 10:  # a signature spread over many lines: its first line is enough
        end = node.lineno
    signature = lines[node.lineno - 1:end]
    # A docstring or statement on the `def` line itself: keep only up to the colon-ended part.
    return [line for line in signature if line.strip()]
