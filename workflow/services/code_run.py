"""POST /code/run: one sandbox run (the view answers with the reference's {success, output, error})."""

from __future__ import annotations

from codegen_site.sandbox import SandboxResult, arun_python


async def run_code(code: str, tests: str | None = None, timeout: float = 30.0) -> SandboxResult:
    return await arun_python(code, tests or None, timeout=timeout)
