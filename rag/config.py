"""The settings the code index reads, as typed sections (codegen_site.core.sections): [rag],
and of [embeddings] the provider /rag/status names before any index exists (the embedders
themselves are configured in codegen_site.llm). Converted once per config version, so no code
here casts a raw config value."""

from __future__ import annotations

from dataclasses import dataclass

from codegen_site.core.sections import section


@dataclass(frozen=True)
class RagSection:
    collection: str             # the Chroma collection; the lexical index lives beside it
    chroma_url: str             # a Chroma server, or "" for a store under the data dir
    chunk_lines: int            # longest chunk, in lines
    chunk_overlap: int          # lines two pieces of a long block share
    max_file_kb: int            # larger files are not indexed
    top_k: int                  # results of a search that names no limit
    fusion_candidates: int      # candidates each ranking gives the hybrid search
    stale_run_seconds: float    # a run older than this no longer holds back others (its process died)
    # What is indexed (rag.sources): suffixes of source and documentation files (empty: every text file),
    # and the suffixes and whole names never indexed (translation catalogues, data, lock files).
    index_suffixes: tuple[str, ...]
    skip_suffixes: tuple[str, ...]
    skip_names: tuple[str, ...]
    # Relevance (rag.services.search): every score is 0-1; below min_score a chunk is no match.
    min_score: float
    vector_weight: float        # the hybrid score: vector_weight * vector + name_weight * name
    name_weight: float          # + (1 - both) * lexical
    vector_floor: float         # the cosine's lift over unrelated text that scores 0, and the one
    vector_ceiling: float       # that scores 1


@dataclass(frozen=True)
class EmbeddingsSection:
    provider: str


def rag_settings() -> RagSection:
    return section(RagSection, "rag")


def embedding_settings() -> EmbeddingsSection:
    return section(EmbeddingsSection, "embeddings")
