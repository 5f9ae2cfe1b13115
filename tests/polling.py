"""The one way tests wait for something: poll a condition until it holds or time runs out."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float = 60.0, what: str = "condition", interval: float = 0.1):
    """condition()'s first truthy value, polled every `interval` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
