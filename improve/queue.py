"""Transitional: codegen_site/asgi.py still runs `from improve.queue import resume_if_started`.
The queue lives in improve.services (queue, lease, cluster, feed, broker) and improve.selectors;
improve.resources.start_with_server is the one start of the app's processes. Delete this module
once asgi.py calls that."""

from __future__ import annotations

from improve import resources


def resume_if_started() -> None:
    resources.start_with_server()
