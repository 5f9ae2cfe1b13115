"""The lexical half of the code index: BM25 (bm25s) over code-aware tokens, saved under the data dir.

An identifier counts whole and by its parts: `get_user_model` gives `get_user_model`, `get`, `user`,
`model`; `HttpResponseRedirect` gives `httpresponseredirect`, `http`, `response`, `redirect`. So a
question in words finds the identifier, and an identifier typed exactly ranks its own chunks first.

bm25s has no incremental update, so an index run that changed anything rebuilds the whole index from
the tokens stored per file (no file is read again); a run that changed nothing leaves it alone.
rag.store keeps the loaded indexes and decides when one is rebuilt."""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path

import bm25s
import numpy

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
CAMEL_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# Words that say nothing about code; identifiers never get lost this way (they are kept whole).
STOPWORDS = frozenset(
    "a an the of to and or in on at by for from with as is are was be been it its this that these those "
    "do does did how what where which who why when can could should would will i we you my our your "
    "there here into than then them they if not no".split()
)


def _stems(word: str) -> list[str]:
    """Base forms of an English word, so `passwords` meets `password` and `hashed` meets `hash`: a plural
    or -ing/-ed ending removed (with and without a final e: `cached` → `cach`, `cache`)."""
    if len(word) <= 4 or not word.isalpha():
        return []
    if word.endswith("ies"):
        return [word[:-3] + "y"]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return [word[:-1]]
    for ending in ("ing", "ed"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            stem = word[:-len(ending)]
            return [stem, stem + "e"]
    return []


@functools.lru_cache(maxsize=2**16)
def _word_tokens(word: str) -> tuple[str, ...]:
    # Cached: source code repeats its identifiers, and splitting them is the costly part.
    whole = word.lower()
    if whole in STOPWORDS:
        return ()
    tokens = [whole] if len(whole) > 1 else []
    parts = [part.lower() for piece in word.split("_") for part in CAMEL_PART.findall(piece)]
    if len(parts) > 1:
        tokens.extend(part for part in parts if len(part) > 1 and part not in STOPWORDS)
    for token in list(tokens):
        tokens.extend(_stems(token))
    return tuple(tokens)


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    for word in WORD.findall(text):
        tokens.extend(_word_tokens(word))
    return tokens


class LexicalIndex:
    META = "chunks.json"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.ids: list[str] = []
        self.paths: list[str] = []
        self.retriever: bm25s.BM25 | None = None

    # --- build and persist ---------------------------------------------------
    @classmethod
    def build(cls, directory: Path, entries: list[tuple[str, str, list[str]]]) -> "LexicalIndex":
        """entries: (chunk id, path, tokens) for every chunk of the collection."""
        index = cls(directory)
        index.ids = [entry[0] for entry in entries]
        index.paths = [entry[1] for entry in entries]
        if entries:
            index.retriever = bm25s.BM25()
            # An empty token list would give bm25s an empty document it cannot score: keep a placeholder.
            index.retriever.index([entry[2] or ["_"] for entry in entries], show_progress=False)
        index.save()
        return index

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.retriever is not None:
            self.retriever.save(str(self.directory), show_progress=False)
        # The id list is written last and atomically: a reader sees the old index or the new one.
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".chunks.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"ids": self.ids, "paths": self.paths}, handle)
        os.replace(temporary, self.directory / self.META)

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex":
        index = cls(directory)
        meta = Path(directory) / cls.META
        if not meta.exists():
            return index
        with meta.open(encoding="utf-8") as handle:
            saved = json.load(handle)
        index.ids, index.paths = saved["ids"], saved["paths"]
        if index.ids:
            index.retriever = bm25s.BM25.load(str(directory))
        return index

    # --- search --------------------------------------------------------------
    def search(self, query: str, limit: int, path_prefix: str | None = None) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) best first; only chunks of files under path_prefix when given."""
        tokens = tokenize(query)
        if self.retriever is None or not tokens:
            return []
        vocabulary = self.retriever.vocab_dict
        known = [token for token in tokens if token in vocabulary]
        if not known:
            return []
        mask = None
        if path_prefix and path_prefix != ".":
            mask = numpy.fromiter((_under(path, path_prefix) for path in self.paths), dtype=numpy.float32,
                                  count=len(self.paths))
            if not mask.any():
                return []
        limit = min(limit, len(self.ids))
        documents, scores = self.retriever.retrieve([known], k=limit, show_progress=False, weight_mask=mask,
                                                    n_threads=1)
        return [(self.ids[int(document)], float(score))
                for document, score in zip(documents[0], scores[0], strict=True) if score > 0]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")

