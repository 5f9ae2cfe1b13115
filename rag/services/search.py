"""Search of the code index: vectors, BM25, or both fused by reciprocal rank.

`retrieve(query, top_k)` is what other apps call (the workflow's research step, @codebase chat),
with `context_text(chunks)` to put the chunks into a prompt."""

from __future__ import annotations

import logging

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, Conflict
from codegen_site.llm.embedders import get_embedder
from rag.config import rag_settings
from rag.models import IndexedFile
from rag.selectors import indexed_files_under
from rag.store import existing_collection, lexical_index

logger = logging.getLogger(__name__)

MODES = ("hybrid", "vector", "lexical")


def _vector_hits(collection, query: str, limit: int, prefix: str | None, strict: bool) -> list[tuple[str, float]]:
    where = None
    if prefix and prefix != ".":
        paths = list(indexed_files_under(prefix).values_list("path", flat=True))
        if not paths:
            return []
        where = {"path": {"$in": paths}}
    with get_embedder() as embedder:
        built_with = (collection.metadata or {}).get("embedding")
        if embedder.identity != built_with:
            if strict:
                raise Conflict(f"The index was built with {built_with} but the embedder now is "
                               f"{embedder.identity}: index again to search by meaning")
            logger.warning("Index built with %s, embedder is %s: lexical search only", built_with, embedder.identity)
            return []
        vector = embedder.embed([query])[0]
    found = collection.query(query_embeddings=[vector], n_results=max(1, min(limit, collection.count())),
                             where=where, include=["distances"])
    return [(chunk_id, 1.0 - float(distance)) for chunk_id, distance in zip(found["ids"][0], found["distances"][0], strict=True)]


def _fused(rankings: tuple[list[tuple[str, float]], ...], k: float, limit: int) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: each ranking gives a chunk 1 / (k + its rank)."""
    fused: dict[str, float] = {}
    for hits in rankings:
        for rank, (chunk_id, _) in enumerate(hits):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank + 1)
    return sorted(fused.items(), key=lambda item: item[1], reverse=True)[:limit]


def search(query: str, limit: int | None = None, path: str | None = None, mode: str = "hybrid") -> list[dict]:
    """Chunks best first: [{path, start_line, end_line, symbol, content, score}]. `hybrid` fuses the
    vector and BM25 rankings by reciprocal rank; `vector` and `lexical` give one ranking alone."""
    configured = rag_settings()
    if mode not in MODES:
        raise BadInput(f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    limit = limit or configured.top_k
    prefix = workspace.relative(workspace.resolve(path)) if path else None
    collection = existing_collection()
    if collection is None or not query.strip() or collection.count() == 0:
        return []
    wanted = max(limit, configured.fusion_candidates) if mode == "hybrid" else limit
    vector_hits = _vector_hits(collection, query, wanted, prefix, mode == "vector") if mode != "lexical" else []
    lexical_hits = lexical_index().search(query, wanted, prefix) if mode != "vector" else []
    if mode == "hybrid":
        ranked = _fused((vector_hits, lexical_hits), configured.rrf_k, limit)
    else:
        ranked = (vector_hits or lexical_hits)[:limit]
    if not ranked:
        return []
    stored = collection.get(ids=[chunk_id for chunk_id, _ in ranked], include=["documents", "metadatas"])
    by_id = {chunk_id: (document, metadata)
             for chunk_id, document, metadata in zip(stored["ids"], stored["documents"], stored["metadatas"], strict=True)}
    results = []
    for chunk_id, score in ranked:
        if chunk_id not in by_id:  # removed between the two reads
            continue
        document, metadata = by_id[chunk_id]
        # An index built before a rule changed may hold what the workspace layer now refuses.
        if workspace.is_off_limits(workspace.root() / metadata["path"]) or workspace.looks_secret(document.encode()):
            continue
        results.append({"path": metadata["path"], "start_line": metadata["start_line"],
                        "end_line": metadata["end_line"], "symbol": metadata.get("symbol", ""),
                        "content": document, "score": round(score, 6)})
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
    """Top chunks for `query`, best first: [{"path", "start_line", "end_line", "symbol", "content", "score"}].

    Returns [] when no index exists."""
    if not IndexedFile.objects.exists():
        return []
    return search(query, top_k, mode="hybrid")
