"""The bundled embedding model's speed: chunks/s against batch size and threads, beside the path it
replaced, measured in the same run.

The chunks are those an index run of the installed Django package embeds (the default [rag] file lists,
rag.chunking), the first `--chunks` of them. Each row embeds them all with the bundled model
(OnnxEmbedder) at one batch size (texts per run, no token budget) and number of threads, then as shipped,
reading what the index reads of a chunk (rag.chunking.embedding_text) up to `--tokens` (default:
embeddings.embedded_max_tokens); `before` is the path this replaced, kept below as it was: one batch at a
time split across two threads, texts sorted by characters, each chunk's outline and then its code up to 128
tokens (its setting then). Rounds alternate before and the grid, so a busy machine weighs on both; every
figure is the best of the rounds, and each ratio is against `before` of the same run.

    python bench/embedder.py [--chunks 2000] [--batches 8,16,32,64] [--threads 1,2,4] [--tokens 64,128]
                             [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")

import django  # noqa: E402

django.setup()

import numpy  # noqa: E402

from codegen_site.llm.config import EmbeddingsSection  # noqa: E402
from codegen_site.llm.embedders import OnnxEmbedder, available_cores, embedded_model_files  # noqa: E402
from codegen_site.llm.service import get_llm  # noqa: E402
from rag.chunking import Chunker, embedding_text  # noqa: E402
from rag.config import rag_settings  # noqa: E402
from rag.sources import FileKinds, is_text  # noqa: E402

# What `before` read of a chunk.
BEFORE_TOKENS = 128


class BeforeEmbedder:
    """The embedding path this replaced, as it was: one session split across two threads, texts sorted
    by characters, batches of 32 run one after the other, each padded by the tokenizer."""

    def __init__(self):
        import onnxruntime
        from tokenizers import Tokenizer

        model, tokenizer = embedded_model_files()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(tokenizer)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tokenizer.enable_truncation(max_length=BEFORE_TOKENS)

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        for start in range(0, len(order), 32):
            picked = order[start:start + 32]
            encodings = self.tokenizer.encode_batch([texts[index] for index in picked])
            ids = numpy.array([item.ids for item in encodings], dtype=numpy.int64)
            mask = numpy.array([item.attention_mask for item in encodings], dtype=numpy.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": numpy.zeros_like(ids)})[0]
            weights = mask[..., None].astype(numpy.float32)
            pooled = (hidden * weights).sum(axis=1) / numpy.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= numpy.clip(numpy.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for index, vector in zip(picked, pooled.tolist(), strict=True):
                vectors[index] = vector
        return vectors


def chunks_of_django(count: int) -> tuple[list[str], list[str]]:
    """(the texts the index embeds now, the texts it embedded before) of `count` chunks spread evenly
    over the installed Django package's indexable files."""
    configured = rag_settings()
    kinds, chunker = FileKinds(configured), Chunker(configured.chunk_lines, configured.chunk_overlap)
    source = Path(django.__file__).parent
    now, before = [], []
    for file in sorted(source.rglob("*")):
        if not file.is_file() or "__pycache__" in file.parts or not kinds(file.name):
            continue
        data = file.read_bytes()
        if not data or len(data) > configured.max_file_kb * 1024 or not is_text(data):
            continue
        path = "django/" + file.relative_to(source).as_posix()
        for chunk in chunker.chunk(path, data.decode("utf-8", errors="replace")):
            now.append(embedding_text(path, chunk))
            before.append(embedding_text(path, chunk, code_lines=None))
    step = max(1, len(now) // count)
    return now[::step][:count], before[::step][:count]


def rate(embed, texts: list[str]) -> tuple[float, float]:
    """(chunks per second, chunks per CPU-second of this process): on a machine others load too, the
    first says as much about them as about the embedder, the second is its own cost."""
    started, cpu_started = time.perf_counter(), time.process_time()
    embed(texts)
    return len(texts) / (time.perf_counter() - started), len(texts) / max(1e-9, time.process_time() - cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--threads", default=",".join(str(n) for n in sorted({1, 2, available_cores(), 4})))
    parser.add_argument("--tokens", default=str(get_llm().embeddings.embedded_max_tokens),
                        help="the token limits of the grid (default: embeddings.embedded_max_tokens)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    batches = [int(value) for value in args.batches.split(",")]
    threads = [int(value) for value in args.threads.split(",")]
    limits = [int(value) for value in args.tokens.split(",")]
    now, before_texts = chunks_of_django(args.chunks)
    print(f"{len(now)} chunks of the installed Django package; {available_cores()} cores, load "
          f"{os.getloadavg()[0]:.1f}")
    before = BeforeEmbedder()
    before.embed(before_texts[:64])  # warm up both
    embedders = {(limit, batch, count): OnnxEmbedder(EmbeddingsSection("embedded", "", batch, limit, count))
                 for limit in limits for batch in batches for count in threads}
    for embedder in embedders.values():
        embedder.batch_tokens = sys.maxsize  # the grid's batch is texts per run, whatever their tokens
    shipped = {limit: OnnxEmbedder(EmbeddingsSection("embedded", "", get_llm().embeddings.batch_size, limit, 0))
               for limit in limits}
    next(iter(embedders.values())).embed(now[:64])
    before_rates: list[tuple[float, float]] = []
    same_text: list[tuple[float, float]] = []
    grid: dict[tuple[int, int, int], list[tuple[float, float]]] = {key: [] for key in embedders}
    shipped_rates: dict[int, list[tuple[float, float]]] = {limit: [] for limit in limits}
    default = OnnxEmbedder(EmbeddingsSection("embedded", "", 32, BEFORE_TOKENS, 0))
    for _ in range(args.rounds):
        before_rates.append(rate(before.embed, before_texts))
        # The new path on the old texts: what the machinery alone gains.
        same_text.append(rate(default.embed, before_texts))
        for key, embedder in embedders.items():
            grid[key].append(rate(embedder.embed, now))
        for limit, embedder in shipped.items():
            shipped_rates[limit].append(rate(embedder.embed, now))
    base, base_cpu = (max(rates[column] for rates in before_rates) for column in (0, 1))

    def shown(rates: list[tuple[float, float]]) -> str:
        best, best_cpu = (max(rate[column] for rate in rates) for column in (0, 1))
        return f"{best:6.1f}/s {best / base:4.2f}x, {best_cpu:5.1f}/CPU-s {best_cpu / base_cpu:4.2f}x"

    print(f"before: {base:.1f} chunks/s, {base_cpu:.1f} per CPU-second (batch 32, 2 intra-op threads, whole "
          f"chunk up to {BEFORE_TOKENS} tokens)")
    print(f"new path, the same texts as before (batch 32, {default.threads} threads): {shown(same_text)}")
    print("new path, the texts the index embeds now (outline; code only where there is none); chunks/s and per "
          "CPU-second, each with its ratio to before:")
    for limit, batch, count in grid:
        print(f"  {limit:3d} tokens, batch {batch:3d}, {count} threads: {shown(grid[limit, batch, count])}")
    for limit, embedder in shipped.items():
        print(f"  {limit:3d} tokens, as shipped (batch_size {embedder.batch_size} texts and at most "
              f"{embedder.batch_tokens} tokens per run, {embedder.threads} threads): {shown(shipped_rates[limit])}")
    for embedder in [default, *embedders.values(), *shipped.values()]:
        embedder.close()


if __name__ == "__main__":
    main()
