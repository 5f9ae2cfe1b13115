"""Code index on the installed Django package, per embedder. `--corpus package` (default) copies the whole
package (885 Python files, 1,226 translation catalogues, templates, JavaScript, ...) and indexes it with
the default [rag] file lists, as a user's index run would; `--corpus py` copies only its Python files.

- cold: files/s and chunks/s of a first index run;
- unchanged: the same tree again, as a share of the cold run (goal: at most 5 %);
- one edited file: the tree again after one file changed, against indexing that file alone into an
  empty index (goal: at most 2x);
- retrieval quality, on each question set (`--questions`): bench/rag_questions.json (63 questions, used to
  choose the settings) and bench/rag_questions_heldout.json (50 questions written before any tuning and
  never used to choose one). Each question has the file and line range that answers it: recall@1,
  recall@5 and MRR@10 for vector, BM25 and hybrid search, as the search answers (results under
  rag.min_score left out), and for hybrid also with no cut-off. A hit is a result in that file whose
  lines overlap the range; for hybrid also with any result in that file counted (the file found, its
  chunk perhaps not), printed apart and never mixed into the first figures. Each set also has queries
  nothing in Django answers (`unrelated`): the count answered with no match, and the count of real
  questions wrongly answered with none.

Embedders: `fake` is the scripted Ollama server (tests/fakes, no delay, word-hash vectors: its timings
show the index's own cost, its vector quality means nothing); `embedded` is the bundled MiniLM.

    python bench/rag_index.py [--embedders fake,embedded] [--corpus package|py] [--files N]
                              [--questions rag_questions.json,rag_questions_heldout.json] [--set rag.key=value]

`--baseline REF` instead times only the cold index run with the bundled embedder, this checkout against
commit REF's tree (`git archive`), each run in a process of its own on its own empty data dir, over the
same copy of the package, the order alternating each round (`--rounds`): files/s, chunks/s, seconds and
CPU seconds of each, the ratios this ÷ baseline of chunks/s and of the time to index the package (the
chunk counts differ when chunking changed, so both are printed), and the load average.

    python bench/rag_index.py --baseline 83b2004 [--rounds 2] [--corpus package|py] [--files N]
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
if "--child" not in sys.argv:  # a child runs the tree on its PYTHONPATH, maybe another commit's
    sys.path.insert(0, str(ROOT))
QUESTION_SETS = "rag_questions.json,rag_questions_heldout.json"
EDITED = "django/db/models/query.py"


def prepare(base: Path, limit: int | None, corpus: str, needed: set[str], setup: bool = True) -> Path:
    import django

    source = Path(django.__file__).parent
    workspace = base / "workspace"
    pattern = "*.py" if corpus == "py" else "*"
    files = sorted(file for file in source.rglob(pattern) if file.is_file() and "__pycache__" not in file.parts)
    if limit:
        # The first N files, and every file a question's answer is in.
        files = sorted(set(files[:limit]) | {source.parent / path for path in needed})
    for file in files:
        target = workspace / "django" / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    if not setup:
        return workspace
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


def ranks(questions: list[dict], mode: str, min_score: float | None, by_file: bool = False) -> list[int | None]:
    """The rank of the first hit of each question: a result in the answer's file overlapping its lines
    (by_file: any result in the answer's file), None when there is none in the first 10."""
    from rag import services

    found = []
    for item in questions:
        hits = services.search(item["question"], 10, mode=mode, min_score=min_score)
        found.append(next((position for position, hit in enumerate(hits, 1)
                           if hit["path"] == item["path"] and (by_file or (hit["start_line"] <= item["end_line"]
                                                                           and hit["end_line"] >= item["start_line"]))),
                          None))
    return found


def figures(found: list[int | None]) -> str:
    count = len(found)
    return (f"recall@1 {sum(1 for r in found if r == 1) / count:.2f}  "
            f"recall@5 {sum(1 for r in found if r and r <= 5) / count:.2f}  "
            f"MRR@10 {sum(1 / r for r in found if r) / count:.3f}")


def quality(name: str, label: str, question_set: dict) -> None:
    from rag import services

    questions, unrelated = question_set["questions"], question_set.get("unrelated", [])
    for mode in ("vector", "lexical", "hybrid"):
        print(f"[{name}] {label} {mode:8s} {figures(ranks(questions, mode, None))}  ({len(questions)} questions)")
    print(f"[{name}] {label} {'hybrid, no cut-off':8s} {figures(ranks(questions, 'hybrid', 0.0))}")
    print(f"[{name}] {label} {'hybrid, any chunk of the file counted':8s} "
          f"{figures(ranks(questions, 'hybrid', None, by_file=True))}")
    empty = sum(1 for item in questions if not services.search(item["question"], 10))
    no_match = sum(1 for query in unrelated if not services.search(query, 10))
    print(f"[{name}] {label} no match (hybrid): {no_match} of {len(unrelated)} unrelated queries; "
          f"{empty} of {len(questions)} questions wrongly")


def run(name: str, overrides: dict, workspace: Path, question_sets: dict[str, dict]) -> None:
    from rag import services

    configure({**overrides, "rag": {**overrides.get("rag", {}), "collection": f"bench-{name}"}})
    started, cpu_started = time.perf_counter(), time.process_time()
    cold = services.index_path("django")
    cold_seconds, cold_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    files = cold.files
    # CPU seconds too: on a shared machine the wall time mostly says how busy it was.
    print(f"[{name}] cold: {files} files, {cold.chunks} chunks in {cold_seconds:.2f} s "
          f"= {files / cold_seconds:.1f} files/s, {cold.chunks / cold_seconds:.1f} chunks/s "
          f"(CPU {cold_cpu:.1f} s = {cold.chunks / cold_cpu:.1f} chunks per CPU-second; load {os.getloadavg()[0]:.1f})")

    from collections import Counter

    from rag.models import IndexedFile

    copied = sum(1 for file in (workspace / "django").rglob("*") if file.is_file())
    kinds = Counter(Path(path).suffix or Path(path).name for path in IndexedFile.objects.values_list("path", flat=True))
    print(f"[{name}] indexed {sum(kinds.values())} of the {copied} files copied: "
          + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common()))

    started = time.perf_counter()
    again = services.index_path("django")
    unchanged_seconds = time.perf_counter() - started
    print(f"[{name}] unchanged tree: {unchanged_seconds:.3f} s = {100 * unchanged_seconds / cold_seconds:.1f} % "
          f"of cold (goal <= 5 %); embedded {again.chunks} chunks, skipped {again.skipped} files")

    for label, question_set in question_sets.items():
        quality(name, label, question_set)

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


def child() -> None:
    """One tree's cold index run of the workspace in the environment (the bundled embedder), as one
    JSON line; the model's loading is part of it, as in a server's first run."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from rag import services

    started, cpu_started = time.perf_counter(), time.process_time()
    result = services.index_path("django")
    print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu_started,
                      "files": result.files, "chunks": result.chunks, "load": os.getloadavg()[0]}), flush=True)


def against_baseline(ref: str, rounds: int, limit: int | None, corpus: str, needed: set[str]) -> None:
    import statistics
    import subprocess

    sys.path.insert(0, str(Path(__file__).parent))
    from baseline import PYTHON, describe, exported, tree_env

    base = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        workspace = prepare(base, limit, corpus, needed, setup=False)
        runs: dict[str, list[dict]] = {"baseline": [], "this": []}
        loads = []
        with exported(ref) as old_tree:
            trees = {"baseline": old_tree, "this": ROOT}
            for round_number in range(rounds):
                for name in (list(trees) if round_number % 2 == 0 else list(reversed(trees))):
                    data = base / f"{name}-{round_number}"
                    (data / "config").mkdir(parents=True)
                    env = tree_env(trees[name], DJANGO_SETTINGS_MODULE="codegen_site.settings",
                                   CODEGEN_DATA_DIR=str(data), CODEGEN_CONFIG_DIR=str(data / "config"),
                                   CODEGEN_WORKSPACE_ROOT=str(workspace),
                                   DATABASE_URL=f"sqlite:///{data / 'bench.sqlite3'}",
                                   CODEGEN_LOGGING__LEVEL="ERROR", CODEGEN_EMBEDDINGS__PROVIDER="embedded")
                    completed = subprocess.run([PYTHON, __file__, "--child"], cwd=trees[name], env=env,
                                               capture_output=True, text=True)
                    if completed.returncode:
                        raise SystemExit(f"the {name} run failed:\n{completed.stderr[-3000:]}")
                    runs[name].append(json.loads(completed.stdout.strip().splitlines()[-1]))
                    loads.append(runs[name][-1]["load"])
                    shutil.rmtree(data, ignore_errors=True)
                    print(f"  round {round_number + 1} {name:8s}: {runs[name][-1]}", flush=True)
        copied = sum(1 for file in (workspace / "django").rglob("*") if file.is_file())
        print(f"cold index run, bundled embedder, a copy of {copied} files of the installed Django package "
              f"({corpus}{f', first {limit} files' if limit else ''}); {rounds} rounds, order alternating; "
              f"{os.cpu_count()} CPUs, load average during the runs {min(loads):.1f}-{max(loads):.1f}")
        print(f"  baseline {describe(ref)}\n  this     {describe(None)}")
        medians = {}
        for name, results in runs.items():
            seconds = statistics.median(result["seconds"] for result in results)
            chunks_rate = statistics.median(result["chunks"] / result["seconds"] for result in results)
            files_rate = statistics.median(result["files"] / result["seconds"] for result in results)
            cpu = statistics.median(result["cpu"] for result in results)
            medians[name] = (seconds, chunks_rate)
            each = [result["seconds"] for result in results]
            print(f"  {name:8s}: {results[-1]['files']} files, {results[-1]['chunks']} chunks; median "
                  f"{seconds:.1f} s = {files_rate:.1f} files/s, {chunks_rate:.1f} chunks/s (CPU {cpu:.1f} s; "
                  f"each run: {', '.join(f'{seconds:.1f} s' for seconds in each)})")
        print(f"  this / baseline: chunks/s {medians['this'][1] / medians['baseline'][1]:.2f}x; time to index the "
              f"package {medians['baseline'][0] / medians['this'][0]:.2f}x faster (goal: 3x chunks/s)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    if "--child" in sys.argv:
        child()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedders", default="fake,embedded")
    parser.add_argument("--files", type=int, default=None,
                        help="index only the first N files and those holding the answers (quick look)")
    parser.add_argument("--corpus", choices=("package", "py"), default="package")
    parser.add_argument("--questions", default=QUESTION_SETS, help="question files in bench/, comma-separated")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting for the runs, e.g. rag.min_score=0.4 (a JSON value, or text)")
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="time only the cold index run, this checkout against commit REF")
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: runs of each tree")
    args = parser.parse_args()
    question_sets = {name.removeprefix("rag_").removesuffix(".json"): json.loads((Path(__file__).parent / name).read_text())
                     for name in args.questions.split(",")}
    if args.baseline:
        needed = {item["path"] for question_set in question_sets.values() for item in question_set["questions"]}
        against_baseline(args.baseline, args.rounds, args.files, args.corpus, needed)
        return
    settings: dict = {}
    for pair in args.set:
        key, _, value = pair.partition("=")
        section, _, option = key.partition(".")
        try:
            settings.setdefault(section, {})[option] = json.loads(value)
        except ValueError:
            settings.setdefault(section, {})[option] = value
    base = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        needed = {item["path"] for question_set in question_sets.values() for item in question_set["questions"]}
        workspace = prepare(base, args.files, args.corpus, needed)
        questions = question_sets
        for name in args.embedders.split(","):
            if name == "fake":
                from tests.fakes.llm_server import FakeLLMServer

                with FakeLLMServer(embed_dim=384) as server:
                    run(name, {**settings, "embeddings": {"provider": "ollama", "model": "nomic-embed-text"},
                               "ollama": {"host": server.url}}, workspace, questions)
            elif name == "embedded":
                run(name, {**settings, "embeddings": {**settings.get("embeddings", {}), "provider": "embedded"}},
                    workspace, questions)
            else:
                raise SystemExit(f"unknown embedder {name}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
