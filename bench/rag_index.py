"""Code index on the installed Django package's Python source (about 880 files), per embedder:

- cold: files/s and chunks/s of a first index run;
- unchanged: the same tree again, as a share of the cold run (goal: at most 5 %);
- one edited file: the tree again after one file changed, against indexing that file alone into an
  empty index (goal: at most 2x);
- retrieval quality: the questions in bench/rag_questions.json (each with the file and line range that
  answers it): recall@1, recall@5 and MRR@10 for vector, BM25 and hybrid search. A hit is a result in
  that file whose lines overlap the range.

Embedders: `fake` is the scripted Ollama server (tests/fakes, no delay, word-hash vectors: its timings
show the index's own cost, its vector quality means nothing); `embedded` is the bundled MiniLM.

    python bench/rag_index.py [--embedders fake,embedded] [--files N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QUESTIONS = Path(__file__).with_name("rag_questions.json")
EDITED = "django/db/models/query.py"


def prepare(base: Path, limit: int | None) -> Path:
    import django

    source = Path(django.__file__).parent
    workspace = base / "workspace"
    files = sorted(source.rglob("*.py"))[:limit] if limit else sorted(source.rglob("*.py"))
    for file in files:
        target = workspace / "django" / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    os.environ.update({
        "CODEGEN_DATA_DIR": str(base / "data"), "CODEGEN_WORKSPACE_ROOT": str(workspace),
        "CODEGEN_CONFIG_DIR": str(base / "config"), "DATABASE_URL": f"sqlite:///{base / 'bench.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "codegen_site.settings", "CODEGEN_LOGGING__LEVEL": "WARNING",
    })
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return workspace


def configure(overrides: dict) -> None:
    from codegen_site.core import config

    config.override(overrides)


def quality(questions: list[dict]) -> dict[str, dict[str, float]]:
    from rag import services

    figures = {}
    for mode in ("vector", "lexical", "hybrid"):
        ranks = []
        for item in questions:
            hits = services.search(item["question"], 10, mode=mode)
            rank = next((position for position, hit in enumerate(hits, 1)
                         if hit["path"] == item["path"] and hit["start_line"] <= item["end_line"]
                         and hit["end_line"] >= item["start_line"]), None)
            ranks.append(rank)
        count = len(ranks)
        figures[mode] = {"recall@1": sum(1 for r in ranks if r == 1) / count,
                         "recall@5": sum(1 for r in ranks if r and r <= 5) / count,
                         "mrr@10": sum(1 / r for r in ranks if r) / count}
    return figures


def run(name: str, overrides: dict, workspace: Path, questions: list[dict]) -> None:
    from rag import services

    configure({**overrides, "rag": {"collection": f"bench-{name}"}})
    started, cpu_started = time.perf_counter(), time.process_time()
    cold = services.index_path("django")
    cold_seconds, cold_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    files = cold.files
    # CPU seconds too: on a shared machine the wall time mostly says how busy it was.
    print(f"[{name}] cold: {files} files, {cold.chunks} chunks in {cold_seconds:.2f} s "
          f"= {files / cold_seconds:.1f} files/s, {cold.chunks / cold_seconds:.1f} chunks/s "
          f"(CPU {cold_cpu:.1f} s = {cold.chunks / cold_cpu:.1f} chunks per CPU-second; load {os.getloadavg()[0]:.1f})")

    started = time.perf_counter()
    again = services.index_path("django")
    unchanged_seconds = time.perf_counter() - started
    print(f"[{name}] unchanged tree: {unchanged_seconds:.3f} s = {100 * unchanged_seconds / cold_seconds:.1f} % "
          f"of cold (goal <= 5 %); embedded {again.chunks} chunks, skipped {again.skipped} files")

    figures = quality(questions)
    for mode, values in figures.items():
        print(f"[{name}] {mode:8s} recall@1 {values['recall@1']:.2f}  recall@5 {values['recall@5']:.2f}  "
              f"MRR@10 {values['mrr@10']:.3f}  ({len(questions)} questions)")

    # Best of three for both sides: on a shared machine a single sub-second figure is mostly noise.
    edited = workspace / EDITED
    original = edited.read_text()
    edited_seconds = float("inf")
    for attempt in range(3):
        edited.write_text(original + f"\n\ndef bench_marker_function():\n    return {attempt}\n")
        started = time.perf_counter()
        changed = services.index_path("django")
        edited_seconds = min(edited_seconds, time.perf_counter() - started)
    started = time.perf_counter()
    services.search("bench_marker_function", 5, mode="lexical")
    first_search = time.perf_counter() - started
    started = time.perf_counter()
    services.search("bench_marker_function", 5, mode="lexical")
    next_search = time.perf_counter() - started
    # The same file alone into an empty index (a collection of its own each time).
    alone_seconds = float("inf")
    for attempt in range(3):
        configure({"rag": {"collection": f"bench-{name}-single-{attempt}"}})
        started = time.perf_counter()
        services.index_path(EDITED)
        alone_seconds = min(alone_seconds, time.perf_counter() - started)
    edited.write_text(original)
    print(f"[{name}] one edited file: {edited_seconds:.3f} s ({changed.files} file, {changed.chunks} chunks) "
          f"vs that file alone {alone_seconds:.3f} s = {edited_seconds / alone_seconds:.2f}x (goal <= 2x)")
    print(f"[{name}] the first lexical search after it rebuilds BM25: {first_search:.3f} s, "
          f"the next one {next_search:.3f} s ({first_search / next_search:.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedders", default="fake,embedded")
    parser.add_argument("--files", type=int, default=None, help="index only the first N files (quick look)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        workspace = prepare(base, args.files)
        questions = json.loads(QUESTIONS.read_text())["questions"]
        for name in args.embedders.split(","):
            if name == "fake":
                from tests.fakes.llm_server import FakeLLMServer

                with FakeLLMServer(embed_dim=384) as server:
                    run(name, {"embeddings": {"provider": "ollama", "model": "nomic-embed-text"},
                               "ollama": {"host": server.url}}, workspace, questions)
            elif name == "embedded":
                run(name, {"embeddings": {"provider": "embedded"}}, workspace, questions)
            else:
                raise SystemExit(f"unknown embedder {name}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
