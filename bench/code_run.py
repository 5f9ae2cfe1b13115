"""Sandbox start-up cost against the interpreter floor and a cold pytest run.

    python bench/code_run.py [N]

Prints p50/p90 wall times in ms; no assertions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# the sandbox reads its [sandbox] config through the project's settings
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings_test")

from figures import percentile  # noqa: E402

from codegen_site import sandbox  # noqa: E402
from codegen_site.sandbox import run_python  # noqa: E402

CODE = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"
TESTS = "from solution import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}

    floor = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env, check=True), n)

    with tempfile.TemporaryDirectory() as d:
        Path(d, "solution.py").write_text(CODE)
        Path(d, "test_solution.py").write_text(TESTS)
        Path(d, "pytest.ini").write_text("[pytest]\n")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_solution.py"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        cold = timed(lambda: subprocess.run(cmd, cwd=d, env=env, check=True, **quiet), n)
        # the stricter baseline: no third-party plugin autoload, like the sandbox
        env_na = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        cold_na = timed(lambda: subprocess.run(cmd, cwd=d, env=env_na, check=True, **quiet), n)

    t = time.perf_counter()
    sandbox.warmup()
    startup = time.perf_counter() - t
    mode = sandbox.isolation_mode()

    def plain():
        r = run_python(CODE)
        assert r.success, r.output

    def with_tests():
        r = run_python(CODE, TESTS)
        assert r.success, r.output

    plain()
    with_tests()
    plain_t = timed(plain, n)
    tests_t = timed(with_tests, n)

    with sandbox.override_limits(per_run_netns=False):
        plain()
        plain_nonet = timed(plain, n)

    f50, c50 = percentile(floor, .5) * 1000, percentile(cold, .5) * 1000
    print(f"python {sys.version.split()[0]} ({sys.executable}), isolation={mode}, N={n}")
    print(f"runner start-up (once per server process): {startup * 1000:.0f} ms")
    root_seconds = sandbox.runner._get_zygote().hello.get("root_seconds")
    if root_seconds is not None:
        print(f"  of which building the minimal root: {root_seconds * 1000:.1f} ms")
    print(f"{'':34}{'p50 ms':>9}{'p90 ms':>9}{'/floor':>9}{'/cold pytest':>14}")
    rows = [("floor: python -c pass", floor), ("cold: python -m pytest", cold),
            ("cold pytest, no plugin autoload", cold_na),
            ("run_python(code)", plain_t), ("run_python(code) no per-run netns", plain_nonet),
            ("run_python(code, tests)", tests_t)]
    for name, xs in rows:
        p50 = percentile(xs, .5) * 1000
        print(f"{name:34}{p50:9.1f}{percentile(xs, .9) * 1000:9.1f}{p50 / f50:9.2f}{p50 / c50:14.2f}")
    print(f"run_python(code, tests) vs cold pytest without autoload: "
          f"{percentile(tests_t, .5) / percentile(cold_na, .5):.2f}")
    print(f"mean run_python(code) {statistics.mean(plain_t) * 1000:.1f} ms, "
          f"mean run_python(code, tests) {statistics.mean(tests_t) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
