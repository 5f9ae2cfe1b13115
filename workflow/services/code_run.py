"""POST /code/run: one sandbox run, shaped as the reference's {success, output, error}."""

from __future__ import annotations

from codegen_site.sandbox import arun_python


async def run_code(code: str, tests: str | None = None, timeout: float = 30.0) -> dict:
    result = await arun_python(code, tests or None, timeout=timeout)
    return {"success": result.success, "output": result.output, "error": result.error}
