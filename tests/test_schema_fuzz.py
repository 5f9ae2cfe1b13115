"""schemathesis over the OpenAPI schema, every check on, against the real server
(daphne, as `make run` serves it) with the scripted LLM behind it: every answer
must be one the schema documents, in the documented shape and content type."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(240)

# Bounded and repeatable: the same cases on every run.
# too_slow judges the data generator against the clock, which a busy machine fails for no fault of the service.
FUZZ_ARGS = ["--checks", "all", "--max-examples", "5", "--generation-deterministic", "--workers", "1", "--no-color",
             "--suppress-health-check", "too_slow"]

# Operations that take a workspace path: whether a schema-valid path is accepted depends on what is on disk
# (missing: 404; "." or another directory where a file is meant, a file where a directory is meant, a
# non-Python file for /improve, a name over the OS's NAME_MAX, the product's own state: 400; a backup or
# file that changed: 409), which no schema can say. For them, and only for the positive_data_acceptance
# check, a 400 is an acceptable answer to schema-valid data, besides schemathesis' defaults (which already
# hold 404 and 409). Every other check, and every other operation, is as `--checks all` has it.
PATH_OPERATIONS = (r"^(GET /files/(read|tree|backups)|POST /files/(write|restore)"
                   r"|POST /improve/(analyze|queue/add|queue/change)|POST /rag/(index|search))$")
# Operations that reach the LLM or the embedding provider document 502 (the provider answered with an
# error, e.g. a model it does not have) and 503 (it is not reachable). PATCH /config is fuzzed in the same
# run and may name models the scripted LLM does not serve, so these are answers by design there, not server
# errors: not_a_server_error allows them for these operations only (still documented: status_code_conformance).
PROVIDER_OPERATIONS = (r"^(POST /(chat|workflow)|GET /models|POST /improve/(analyze|run|change)"
                       r"|POST /rag/(index|search))$")
# Whether a message fits the model's context window depends on the window (which the fuzzed PATCH /config
# changes: a small openai_compatible.context_tokens, a large llm.max_tokens) and on the model's tokenizer,
# which no schema can say: for the operations that prompt the model a 413 naming the tokens over is an
# answer to schema-valid data (documented: status_code_conformance still checks it). An improvement and a
# project change also name files, so the path answers above hold for them too.
PROMPT_OPERATIONS = r"^(GET /chat/stream|POST /chat|POST /chat/stream|POST /workflow)$"
PROMPT_PATH_OPERATIONS = r"^POST /improve/(run|change)$"
CONFIG = f"""
[[operations]]
include-name-regex = '{PROMPT_OPERATIONS}'
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]

[[operations]]
include-name-regex = '{PROMPT_PATH_OPERATIONS}'
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "429",
                                                     "5xx"]

[[operations]]
include-name-regex = '{PATH_OPERATIONS}'
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-name-regex = '{PROVIDER_OPERATIONS}'
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502", "503"]
"""


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
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{fuzz_server.url}/api/schema?format=json", *FUZZ_ARGS,
         "--report", "har", "--report-dir", str(tmp_path / "report")],  # every request and answer, for a failure
        capture_output=True, text=True, timeout=220, cwd=tmp_path,  # its caches stay out of the checkout
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:] + f"\nHAR in {tmp_path / 'report'}"
    assert "Traceback" not in fuzz_server.log()
