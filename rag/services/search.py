"""Search of the code index: vectors, BM25, or both, with one 0-1 score in every mode.

The score says how well a chunk matches the query, on the same scale whatever the mode:
- lexical: the share of the query's words the chunk holds, each weighted by its rarity (rag.lexical;
  BM25 orders chunks of equal share). 1: every word of the query is in the chunk; 0: none is (a word
  the index has never seen counts as the rarest there is).
- vector: how much closer the chunk's meaning is to the query than unrelated text is (sentences
  about cooking, football, the weather: UNRELATED), as a share of the way to identical (cosine 1),
  mapped from [vector_floor, vector_ceiling] onto [0, 1]. 1: as close as a close paraphrase; 0: no
  closer than unrelated text. Measured from unrelated text and not from the index itself, so an
  embedder whose vectors all lean one way (cosines of unrelated texts around 0.4) scores as one that
  does not, and an index all about one thing still scores its chunks for what they are.
- hybrid: vector_weight * vector + name_weight * name + the rest * lexical, each computed for every
  candidate either ranking found, and ranked by it; `name` is the lexical score against the chunk's
  path and symbols alone (a question naming what a function or file is called), 1 when the query
  names one of the chunk's definitions (`compute_shipping_cost`). 1: all agree fully;
  a chunk only one of them finds gets at most its weight. Without vectors (an index of another
  embedder) the vector weight goes to the others in proportion.
Below `rag.min_score` a chunk is no match and is not returned: a query nothing in the index answers
gets an empty list. `retrieve(query, top_k)` is what other apps call (the workflow's research step,
@codebase chat), so they get only chunks above the cut-off; `context_text(chunks)` puts them into a
prompt."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, Conflict
from codegen_site.llm.embedders import get_embedder
from rag.config import RagSection, rag_settings
from rag.models import IndexedFile
from rag.selectors import indexed_files_under
from rag.store import existing_collection, lexical_index

logger = logging.getLogger(__name__)

MODES = ("hybrid", "vector", "lexical")


@dataclass
class Candidate:
    chunk_id: str
    vector: float = 0.0   # 0-1 (vector_score of the cosine)
    lexical: float = 0.0  # 0-1 (rag.lexical)
    name: float = 0.0     # 0-1, the lexical score against the chunk's path and symbols alone
    score: float = 0.0


# Sentences about nothing a code index holds: the query's average cosine with them is what "unrelated"
# means for this embedder and this query (about 0.05 for the bundled MiniLM; higher for embedders whose
# vectors all lean one way). Embedded once per embedder and process.
UNRELATED = (
    "The recipe calls for two cups of flour and a pinch of salt.",
    "The football match ended in a draw after extra time.",
    "Heavy rain is expected over the mountains tomorrow morning.",
    "She played a sonata on the old piano in the village hall.",
    "The river flows through the capital before it reaches the sea.",
    "Tickets for the museum are cheaper on Sundays.",
    "The kitten slept on the windowsill all afternoon.",
    "He planted tomatoes and beans in the garden last spring.",
    "The novel tells the story of a family over three generations.",
    "Our flight was delayed because of fog at the airport.",
    "The painter mixed blue and yellow paint to get green.",
    "Wear a warm coat, the evening will be cold and windy.",
)
_unrelated_vectors: dict[str, numpy.ndarray] = {}
_unrelated_lock = threading.Lock()


def vector_score(cosine: numpy.ndarray | float, baseline: float, configured: RagSection):
    """Cosine → 0-1: the share of the way from the query's cosine with unrelated text (baseline) to
    identical, put on [vector_floor, vector_ceiling]."""
    lift = (numpy.asarray(cosine, dtype=numpy.float64) - baseline) / max(1e-6, 1.0 - baseline)
    span = max(1e-6, configured.vector_ceiling - configured.vector_floor)
    return numpy.clip((lift - configured.vector_floor) / span, 0.0, 1.0)


def _unit(vectors) -> numpy.ndarray:
    vectors = numpy.atleast_2d(numpy.asarray(vectors, dtype=numpy.float64))
    return vectors / numpy.clip(numpy.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


class _VectorSide:
    """The query's vector against the collection: the nearest chunks, and the cosine of any chunk."""

    def __init__(self, collection, query: str, strict: bool, configured: RagSection):
        self.collection, self.configured = collection, configured
        self.vector = None
        with get_embedder() as embedder:
            built_with = (collection.metadata or {}).get("embedding")
            if embedder.identity != built_with:
                if strict:
                    raise Conflict(f"The index was built with {built_with} but the embedder now is "
                                   f"{embedder.identity}: index again to search by meaning")
                logger.warning("Index built with %s, embedder is %s: lexical search only", built_with,
                               embedder.identity)
                return
            unrelated = _unrelated_vectors.get(embedder.identity)
            vectors = _unit(embedder.embed([query] + ([] if unrelated is not None else list(UNRELATED))))
            if unrelated is None:
                with _unrelated_lock:
                    unrelated = _unrelated_vectors.setdefault(embedder.identity, vectors[1:])
        self.vector = vectors[0]
        self.baseline = float((unrelated @ self.vector).mean()) if len(unrelated) == len(UNRELATED) else 0.0

    def nearest(self, limit: int, where: dict | None) -> dict[str, float]:
        if self.vector is None:
            return {}
        found = self.collection.query(query_embeddings=[self.vector.tolist()],
                                      n_results=max(1, min(limit, self.collection.count())),
                                      where=where, include=["distances"])
        ids, distances = found["ids"][0], found["distances"][0]
        scores = vector_score(1.0 - numpy.asarray(distances, dtype=numpy.float64), self.baseline, self.configured)
        return dict(zip(ids, scores.tolist(), strict=True))

    def of(self, chunk_ids: list[str]) -> dict[str, float]:
        if self.vector is None or not chunk_ids:
            return {}
        stored = self.collection.get(ids=chunk_ids, include=["embeddings"])
        vectors = numpy.asarray(stored["embeddings"], dtype=numpy.float64)
        if not len(vectors):
            return {}
        cosines = vectors @ self.vector / numpy.clip(numpy.linalg.norm(vectors, axis=1), 1e-12, None)
        scores = vector_score(cosines, self.baseline, self.configured)
        return dict(zip(stored["ids"], scores.tolist(), strict=True))


def candidates(query: str, mode: str, prefix: str | None, wanted: int, configured: RagSection,
               collection) -> list[Candidate]:
    """The chunks either ranking finds for `query`, each with both scores (hybrid) or its mode's one,
    and its score in `mode`, best first."""
    lexical = lexical_index()
    where = None
    if prefix and prefix != ".":
        paths = list(indexed_files_under(prefix).values_list("path", flat=True))
        if not paths:
            return []
        where = {"path": {"$in": paths}}
    found: dict[str, Candidate] = {}
    side = None
    if mode != "lexical":
        side = _VectorSide(collection, query, mode == "vector", configured)
        for chunk_id, score in side.nearest(wanted, where).items():
            found[chunk_id] = Candidate(chunk_id, vector=score)
    if mode != "vector":
        relevance = lexical.relevance(query, prefix)
        if relevance is not None:
            for chunk_id, score in lexical.top(relevance, wanted):
                found.setdefault(chunk_id, Candidate(chunk_id)).lexical = score
            if mode == "hybrid":
                positions = lexical.positions
                for candidate in found.values():
                    position = positions.get(candidate.chunk_id)
                    if position is not None:
                        candidate.lexical = float(relevance[0][position])
    if mode == "hybrid":
        if side is not None:
            missing = [candidate.chunk_id for candidate in found.values() if candidate.vector == 0.0]
            for chunk_id, score in side.of(missing).items():
                found[chunk_id].vector = score
        if found:
            stored = collection.get(ids=list(found), include=["metadatas"])
            scores = lexical.name_relevance(query, [metadata["path"] for metadata in stored["metadatas"]],
                                            [metadata.get("symbol", "") for metadata in stored["metadatas"]])
            for chunk_id, score in zip(stored["ids"], scores, strict=True):
                found[chunk_id].name = score
    # Weights over 1 together are taken in proportion, so a score stays within 0-1.
    total = max(1.0, configured.vector_weight + configured.name_weight)
    vector_weight, name_weight = configured.vector_weight / total, configured.name_weight / total
    if side is None or side.vector is None:  # no vectors: their share goes to the others in proportion
        name_weight, vector_weight = (name_weight / (1.0 - vector_weight) if vector_weight < 1.0 else 0.0), 0.0
    for candidate in found.values():
        if mode == "vector":
            candidate.score = candidate.vector
        elif mode == "lexical":
            candidate.score = candidate.lexical
        else:
            candidate.score = (vector_weight * candidate.vector + name_weight * candidate.name
                               + (1.0 - vector_weight - name_weight) * candidate.lexical)
    # Stable: chunks of equal score keep the order their ranking gave them (BM25's, the vectors').
    return sorted(found.values(), key=lambda candidate: -candidate.score)


def search(query: str, limit: int | None = None, path: str | None = None, mode: str = "hybrid",
           min_score: float | None = None) -> list[dict]:
    """Chunks best first, [{path, start_line, end_line, symbol, content, score}], every score 0-1 and at
    least `min_score` (default `rag.min_score`): an empty list when nothing in the index matches.
    `min_score` 0 is no cut-off: the best candidates whatever their scores."""
    configured = rag_settings()
    if mode not in MODES:
        raise BadInput(f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    limit = limit or configured.top_k
    cut_off = configured.min_score if min_score is None else min_score
    prefix = workspace.relative(workspace.resolve(path)) if path else None
    collection = existing_collection()
    if collection is None or not query.strip() or collection.count() == 0:
        return []
    wanted = max(limit, configured.fusion_candidates)
    ranked = [candidate for candidate in candidates(query, mode, prefix, wanted, configured, collection)
              if candidate.score >= cut_off][:limit]
    if not ranked:
        return []
    stored = collection.get(ids=[candidate.chunk_id for candidate in ranked], include=["documents", "metadatas"])
    by_id = {chunk_id: (document, metadata)
             for chunk_id, document, metadata in zip(stored["ids"], stored["documents"], stored["metadatas"], strict=True)}
    results = []
    for candidate in ranked:
        if candidate.chunk_id not in by_id:  # removed between the two reads
            continue
        document, metadata = by_id[candidate.chunk_id]
        # An index built before a rule changed may hold what the workspace layer now refuses.
        if workspace.is_off_limits(workspace.root() / metadata["path"]) or workspace.looks_secret(document.encode()):
            continue
        results.append({"path": metadata["path"], "start_line": metadata["start_line"],
                        "end_line": metadata["end_line"], "symbol": metadata.get("symbol", ""),
                        "content": document, "score": round(candidate.score, 4)})
    return results


def context_text(chunks: list[dict]) -> str:
    """Chunks as prompt text, each headed by its `path:start-end` so an answer can cite it."""
    parts = []
    for chunk in chunks:
        where = chunk.get("path") or "snippet"
        if chunk.get("start_line"):
            where += f":{chunk['start_line']}-{chunk.get('end_line', chunk['start_line'])}"
        parts.append(f"# {where}\n{(chunk.get('content') or '').strip()}")
    return "\n\n".join(parts)


def retrieve(query: str, top_k: int = 5) -> list[dict]:
    """The chunks that match `query`, best first, at most top_k: [{"path", "start_line", "end_line",
    "symbol", "content", "score"}]. Only chunks at or above `rag.min_score`: nothing when no index
    exists or nothing in it is relevant, so a prompt never gets chunks only because they ranked first."""
    if not IndexedFile.objects.exists():
        return []
    return search(query, top_k, mode="hybrid")
