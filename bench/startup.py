"""Interpreter start and a one-test pytest run: the project's venv as `make` now sets it up
(dependencies installed, the checkout on sys.path by a one-line .pth, pytest plugins named in
pyproject.toml) against the set-up before (the project installed editable, every installed
pytest plugin loading by itself), in one run, alternating.

    .venv/bin/python bench/startup.py [--rounds 20] [--pytest-rounds 5]

Interpreters, each `python -c pass`: a bare venv (the floor); two throwaway venvs that see the
project venv's packages (site.addsitedir), one with the project installed editable as before
(`pip install --no-deps -e .`: setuptools' import hook) and one without; the project venv
itself, and with -I (how the sandbox starts it). pytest: one test, with pyproject's addopts
(plugins named) and with addopts reset to "-ra" (every plugin autoloaded, as before). Bytecode
is cached (PYTHONDONTWRITEBYTECODE unset), as on a developer's machine. No assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

from baseline import PYTHON, ROOT

ONE_TEST = "tests/test_sections.py::test_a_missing_setting_is_named"


def env() -> dict[str, str]:
    values = dict(os.environ)
    values.pop("PYTHONDONTWRITEBYTECODE", None)
    return values


def timed(command: list[str], cwd: Path = ROOT) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def seeing_project_packages(path: Path, editable: bool) -> Path:
    subprocess.run([PYTHON, "-m", "venv", *([] if editable else ["--without-pip"]), str(path)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(path), "platbase": str(path)})["purelib"])
    project_site = sysconfig.get_paths()["purelib"]
    (site / "project-packages.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")
    if editable:
        subprocess.run([str(path / "bin/python"), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)],
                       check=True, env=env(), cwd=path)
    return path / "bin/python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pytest-rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = Path(tmp)
        subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(base / "bare")], check=True)
        interpreters = {
            "bare venv (floor)": [str(base / "bare/bin/python")],
            "before: editable install": [str(seeing_project_packages(base / "editable", editable=True))],
            "now: dependencies + .pth": [str(seeing_project_packages(base / "plain", editable=False))],
            "the project venv": [PYTHON],
            "the project venv, -I (sandbox)": [PYTHON, "-I"],
        }
        for command in interpreters.values():  # bytecode compiled once
            timed([*command, "-c", "pass"])
        starts = {label: [] for label in interpreters}
        for round_number in range(args.rounds):
            labels = list(interpreters) if round_number % 2 == 0 else list(reversed(interpreters))
            for label in labels:
                starts[label].append(timed([*interpreters[label], "-c", "pass"], cwd=base))
        # the editable install leaves its metadata in the checkout (ignored by git); it goes with the bench
        for leftover in ROOT.glob("*.egg-info"):
            subprocess.run(["rm", "-rf", str(leftover)], check=True)

    pytest_runs = {"before: every plugin autoloaded": [PYTHON, "-m", "pytest", "-q", "-o", "addopts=-ra", ONE_TEST],
                   "now: the plugins pyproject names": [PYTHON, "-m", "pytest", "-q", ONE_TEST]}
    for command in pytest_runs.values():
        timed(command)
    pytest_times = {label: [] for label in pytest_runs}
    for round_number in range(args.pytest_rounds):
        labels = list(pytest_runs) if round_number % 2 == 0 else list(reversed(pytest_runs))
        for label in labels:
            pytest_times[label].append(timed(pytest_runs[label]))

    floor = statistics.median(starts["bare venv (floor)"])
    before = statistics.median(starts["before: editable install"])
    print(f"startup: {args.rounds} rounds alternating; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'python -c pass':34} {'median ms':>10} {'x floor':>8} {'x before':>9}")
    for label, values in starts.items():
        median = statistics.median(values)
        print(f"{label:34} {median * 1000:10.1f} {median / floor:8.2f} {median / before:9.2f}")
    first = statistics.median(pytest_times["before: every plugin autoloaded"])
    print(f"one-test pytest ({ONE_TEST.split('::')[1]}), median of {args.pytest_rounds}:")
    for label, values in pytest_times.items():
        median = statistics.median(values)
        print(f"  {label:34} {median:6.2f} s {median / first:6.2f}x before")


if __name__ == "__main__":
    main()
