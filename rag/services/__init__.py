"""The code index's writes and searches; other apps and the /rag views call these names:

- indexer: `start_run(path)` records a run, `index_path(path, run=None)` indexes a workspace path
  incrementally (new and changed files embedded, unchanged skipped, deleted removed);
- search: `search(query, limit, path, mode)` (hybrid, vector or lexical), `retrieve(query, top_k)`
  for the workflow's research step and @codebase chat, `context_text(chunks)` for a prompt.

Where the vectors and the BM25 index live is rag.store; reads (status, runs) are rag.selectors."""

from rag.services.indexer import IndexResult, index_path, start_run
from rag.services.search import MODES, context_text, retrieve, search

__all__ = ["MODES", "IndexResult", "context_text", "index_path", "retrieve", "search", "start_run"]
