"""The server: `python -P -m codegen_site.server -b HOST -p PORT` (what `make run` starts).

daphne serving codegen_site.asgi, with request bodies checked before they are stored
(codegen_site.server_http). The process leaves the workspace (working directory and
sys.path) before the app is imported, so nothing a client wrote there is ever imported
by it or by a process it starts.

Only the standard library is imported at module level: the analysis workers are spawned
processes, and a spawned process imports its parent's main module (this one) first."""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -P -m codegen_site.server", description=__doc__.split("\n")[0])
    parser.add_argument("-b", "--bind", dest="host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=8000, help="port to listen on")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")
    # Out of the workspace before the apps are imported (settings alone are needed for it).
    from django.conf import settings

    from codegen_site.core.workspace import leave_workspace

    leave_workspace()
    print(f"Workspace: {settings.WORKSPACE_ROOT} (serving http://{args.host}:{args.port})", flush=True)
    import django

    django.setup(set_prefix=False)

    # daphne.server (through server_http) installs Twisted's reactor; codegen_site.asgi,
    # imported after it, adjusts Twisted's HTTP channel when it finds it loaded.
    from daphne.access import AccessLogGenerator
    from daphne.endpoints import build_endpoint_description_strings

    from codegen_site.server_http import LimitedServer

    endpoints = build_endpoint_description_strings(host=args.host, port=args.port)
    from codegen_site.asgi import application

    server = LimitedServer(application=application, endpoints=endpoints,
                           # daphne's access log, as its command line keeps it
                           action_logger=AccessLogGenerator(sys.stdout))
    server.run()
    if server.abort_start:  # could not listen
        sys.exit(1)


if __name__ == "__main__":
    main()
