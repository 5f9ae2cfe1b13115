"""RAG retrieval used by other apps (the workflow's research stage).

The index itself arrives with the RAG issue; until then there is never an index
and retrieval returns nothing, which callers treat as "no research"."""

from __future__ import annotations


def retrieve(query: str, top_k: int = 5) -> list[dict]:
    """Top chunks for `query`, best first: [{"path", "start_line", "end_line", "content", "score"}].

    Returns [] when no index exists."""
    return []
