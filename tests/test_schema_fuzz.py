"""schemathesis over the OpenAPI schema, every check on, against the real server
(daphne, as `make run` serves it) with the scripted LLM behind it: every answer
must be one the schema documents, in the documented shape and content type."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(240)

# Bounded and repeatable: the same cases on every run.
FUZZ_ARGS = ["--checks", "all", "--max-examples", "5", "--generation-deterministic", "--workers", "1", "--no-color"]


@pytest.fixture
def fuzz_server(live_asgi, fake_llm, tmp_path):
    return live_asgi({
        # Its own config dir: PATCH /config is fuzzed too, and what it saves must
        # not reach the servers other tests start.
        "CODEGEN_TEST_ROOT": str(tmp_path),
        "CODEGEN_LLM__PROVIDER": "ollama",
        "CODEGEN_OLLAMA__HOST": fake_llm.url,
        # The limits are tested elsewhere; here they would only turn cases into 429s.
        "CODEGEN_SECURITY__RATE_ANON": "100000/minute",
        "CODEGEN_SECURITY__RATE_LLM": "100000/minute",
        # One validation run per /workflow case: the HTTP contract is the subject here.
        "CODEGEN_WORKFLOW__MAX_REPAIRS": "0",
    })


def test_schemathesis_finds_nothing(fuzz_server, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{fuzz_server.url}/api/schema?format=json", *FUZZ_ARGS,
         "--report", "har", "--report-dir", str(tmp_path / "report")],  # every request and answer, for a failure
        capture_output=True, text=True, timeout=220, cwd=tmp_path,  # its caches stay out of the checkout
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:] + f"\nHAR in {tmp_path / 'report'}"
    assert "Traceback" not in fuzz_server.log()
