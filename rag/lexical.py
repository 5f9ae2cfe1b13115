"""The lexical half of the code index: BM25 (bm25s) over code-aware tokens, saved under the data dir.

An identifier counts whole and by its parts: `get_user_model` gives `get_user_model`, `get`, `user`,
`model`; `HttpResponseRedirect` gives `httpresponseredirect`, `http`, `response`, `redirect`. So a
question in words finds the identifier, and an identifier typed exactly ranks its own chunks first.

Its score is on a 0-1 scale (`relevance`): the share of the query's words a chunk holds, each word
weighted by its rarity (idf); BM25 orders chunks of equal score. 1: every word of the query is in the
chunk; 0: none is. A query word the index has never seen counts as the rarest word there is, so a
query of made-up words matches nothing well.

bm25s has no incremental update, so an index run that changed anything rebuilds the whole index from
the tokens stored per file (no file is read again); a run that changed nothing leaves it alone.
rag.store keeps the loaded indexes and decides when one is rebuilt."""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass
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


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
CAMEL = re.compile(r"[a-z0-9][A-Z]")


def identifiers(text: str) -> set[str]:
    """The names of code in a text, lowercased: dotted names whole (`QuerySet.get_or_create`), and each
    part with an underscore or a capital inside (`get_or_create`, `QuerySet`)."""
    found = set()
    for match in IDENTIFIER.findall(text):
        parts = match.split(".")
        if len(parts) > 1:
            found.add(match.lower())
        found.update(part.lower() for part in parts if "_" in part.strip("_") or CAMEL.search(part))
    return found


@dataclass(frozen=True)
class QueryWord:
    """A word of a query as the lexical score weighs it: its forms (the word and its base forms, any of
    which a chunk may hold), and for an identifier its parts, each with its forms."""

    forms: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...]

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.forms + tuple(token for part in self.parts for token in part)


def query_words(text: str) -> list[QueryWord]:
    """The distinct words of a query (stopwords and one-letter words left out)."""
    words = []
    for word in dict.fromkeys(WORD.findall(text)):
        whole = word.lower()
        if whole in STOPWORDS or len(whole) < 2:
            continue
        parts = [part.lower() for piece in word.split("_") for part in CAMEL_PART.findall(piece)]
        parts = [part for part in parts if len(part) > 1 and part not in STOPWORDS] if len(parts) > 1 else []
        words.append(QueryWord((whole, *_stems(whole)), tuple((part, *_stems(part)) for part in parts)))
    return words


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
        self._positions: dict[str, int] | None = None
        self._idf: numpy.ndarray | None = None

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
    @property
    def positions(self) -> dict[str, int]:
        if self._positions is None:
            self._positions = {chunk_id: position for position, chunk_id in enumerate(self.ids)}
        return self._positions

    def _idf_of(self) -> numpy.ndarray:
        """Each vocabulary token's idf, as bm25s's default (Lucene) scoring computes it."""
        if self._idf is None:
            indptr = numpy.asarray(self.retriever.scores["indptr"])
            frequencies = numpy.diff(indptr).astype(numpy.float64)
            self._idf = _idf(frequencies, len(self.ids))
        return self._idf

    def weighed(self, query: str) -> tuple[list[tuple[float, list[int], list[tuple[float, list[int]]]]], float]:
        """The query's words as (weight, ids of its forms, [(share, ids of a part's forms)]) and the
        ideal (the sum of the weights, unseen words included): a word weighs the idf of its rarest
        form the index knows (at least MIN_WEIGHT), a word the index does not know as much as its
        rarest word; an identifier's parts share its weight by their own idf."""
        vocabulary = self.retriever.vocab_dict
        idf = self._idf_of()
        words, ideal = [], 0.0
        for word in query_words(query):
            forms = [vocabulary[token] for token in word.forms if token in vocabulary]
            parts = [ids for ids in ([vocabulary[token] for token in part if token in vocabulary]
                                     for part in word.parts) if ids]
            if not forms and not parts:
                ideal += max(MIN_WEIGHT, float(_idf(numpy.ones(1), len(self.ids))[0]))
                continue
            weight = max(MIN_WEIGHT, float(idf[forms].max()) if forms else max(float(idf[part].max()) for part in parts))
            part_weights = [max(MIN_WEIGHT, float(idf[part].max())) for part in parts]
            words.append((weight, forms, [(part_weight / sum(part_weights), part)
                                          for part_weight, part in zip(part_weights, parts, strict=True)]))
            ideal += weight
        return words, ideal

    @staticmethod
    def _covered(words, holding) -> numpy.ndarray | float:
        """Σ weight × held share over the words; holding(ids) says which chunks hold any of the ids."""
        covered = 0.0
        for weight, forms, parts in words:
            credit = 0.0
            for share, part in parts:
                credit = credit + holding(part) * share
            if forms:
                credit = numpy.maximum(credit, holding(forms))
            covered = covered + credit * weight
        return covered

    def relevance(self, query: str, path_prefix: str | None = None) -> tuple[numpy.ndarray, numpy.ndarray] | None:
        """Every chunk's 0-1 score for `query` and its BM25 score (both 0 outside path_prefix), or None
        when no word of the query is in the index.

        The score is the share of the query's words the chunk holds, each word weighted by its rarity
        (the idf of its rarest form the index knows): a chunk holding the word in any form (`passwords`,
        `password`) gets its whole weight; one holding only some parts of an identifier
        (`get_user_model`: `user`, `model`) gets the parts' share of it. A word the index has never
        seen weighs as much as the rarest word there is."""
        if self.retriever is None:
            return None
        words, ideal = self.weighed(query)
        if not words or ideal <= 0:
            return None
        known = list(dict.fromkeys(token for _, forms, parts in words
                                   for token in forms + [token for _, part in parts for token in part]))
        scores = numpy.minimum(self._covered(words, self._holding) / ideal, 1.0) + numpy.zeros(len(self.ids))
        bm25 = self.retriever.get_scores(known).astype(numpy.float64)
        if path_prefix and path_prefix != ".":
            inside = numpy.fromiter((_under(path, path_prefix) for path in self.paths), dtype=numpy.float64,
                                    count=len(self.paths))
            scores *= inside
            bm25 *= inside
        return scores, bm25

    def name_relevance(self, query: str, paths: list[str], symbols: list[str]) -> list[float]:
        """The same 0-1 score for `query` against each chunk's path and symbols alone; 1 for a chunk
        defining an identifier the query names (`compute_shipping_cost`, `QuerySet.get_or_create`)."""
        named = identifiers(query)
        words, ideal = self.weighed(query) if self.retriever is not None else ([], 0.0)
        vocabulary = self.retriever.vocab_dict if self.retriever is not None else {}
        scores = []
        for path, symbol in zip(paths, symbols, strict=True):
            defined = {part.lower() for name in symbol.split(", ") if name
                       for part in (name, name.rpartition(".")[2])}
            if named & defined:
                scores.append(1.0)
                continue
            if not words or ideal <= 0:
                scores.append(0.0)
                continue
            held = {vocabulary[token] for token in tokenize(f"{path} {symbol}") if token in vocabulary}
            covered = self._covered(words, lambda ids, held=held: float(any(i in held for i in ids)))
            scores.append(min(1.0, float(covered) / ideal))
        return scores

    def _holding(self, token_ids: list[int]) -> numpy.ndarray:
        """1.0 for each chunk holding any of the tokens, else 0.0."""
        indptr, indices = self.retriever.scores["indptr"], self.retriever.scores["indices"]
        holding = numpy.zeros(len(self.ids), dtype=numpy.float64)
        for token_id in token_ids:
            holding[indices[indptr[token_id]:indptr[token_id + 1]]] = 1.0
        return holding

    def top(self, relevance: tuple[numpy.ndarray, numpy.ndarray], limit: int) -> list[tuple[str, float]]:
        """The `limit` best (chunk id, score) of `relevance`'s scores, best first (ties by BM25), above 0."""
        scores, bm25 = relevance
        top = numpy.lexsort((-bm25, -scores))[:max(0, limit)]
        return [(self.ids[int(position)], float(scores[position])) for position in top if scores[position] > 0]


# The least a word weighs (the idf of a word in about a third of the chunks): in a small index about one
# thing, the words every chunk holds still count as words of the query.
MIN_WEIGHT = 1.0


def _idf(frequencies: numpy.ndarray, documents: int) -> numpy.ndarray:
    return numpy.log(1.0 + (documents - frequencies + 0.5) / (frequencies + 0.5))


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")

