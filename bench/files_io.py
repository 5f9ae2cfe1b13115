"""files_app write-with-backup and read against bare Python file IO of the same bytes.

    python bench/files_io.py [N]

Baselines, measured in the same run on the same disk: open().write() + os.replace
(no fsync), the same with an fsync of the file (what durability costs on its own),
and open().read(). The service adds the openat walk, a directory lock, the backup
(a streamed copy into the content-addressed store, an fsync, a database row) and
fsyncs of the file and its directory. Prints p50/p99 in ms and ratios; no assertions.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from figures import percentile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = (4 * 1024, 256 * 1024)


def timed(fn, n: int) -> list[float]:
    out = []
    for index in range(n):
        start = time.perf_counter()
        fn(index)
        out.append(time.perf_counter() - start)
    return out


def setup_django(base: Path) -> None:
    for name in ("data", "workspace", "config"):
        (base / name).mkdir()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "codegen_site.settings",
        "CODEGEN_DATA_DIR": str(base / "data"),
        "CODEGEN_WORKSPACE_ROOT": str(base / "workspace"),
        "CODEGEN_CONFIG_DIR": str(base / "config"),
        "DATABASE_URL": f"sqlite:///{base / 'data' / 'bench.sqlite3'}",
        "CODEGEN_LOGGING__LEVEL": "WARNING",
    })
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def payloads(size: int, n: int) -> list[bytes]:
    """n distinct payloads of `size` bytes, so every backup stores new content."""
    line = b"x = 1  # some source code\n"
    body = (line * (size // len(line) + 1))[: size - 16]
    return [body + f"# {index:13d}\n".encode() for index in range(n)]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        base = Path(tmp)
        setup_django(base)
        from files_app import services
        from files_app.models import Backup

        workspace = base / "workspace"
        print(f"files_io: N={n} per figure, workspace on {workspace}")
        print(f"{'size':>7} {'operation':<38} {'p50 ms':>8} {'p99 ms':>8} {'x bare p50':>11} {'x bare p99':>11}")
        for size in SIZES:
            data = payloads(size, n)
            target = workspace / f"bare_{size}.py"
            temp = workspace / f".bare_{size}.tmp"

            def bare_write(index, data=data, target=target, temp=temp):
                with open(temp, "wb") as handle:
                    handle.write(data[index])
                os.replace(temp, target)

            def bare_write_fsync(index, data=data, target=target, temp=temp):
                with open(temp, "wb") as handle:
                    handle.write(data[index])
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, target)

            def service_write(index, data=data, size=size):
                services.write_file(f"svc_{size}.py", data[index])

            def service_write_same(index, data=data, size=size):
                services.write_file(f"same_{size}.py", data[0])

            def service_write_no_backup(index, data=data, size=size):
                services.write_file(f"nob_{size}.py", data[index], create_backup=False)

            def bare_read(index, target=target):
                with open(target, "rb") as handle:
                    handle.read().decode("utf-8")

            def service_read(index, size=size):
                services.read_file(f"svc_{size}.py")

            for warm in (bare_write, service_write, service_write_same, service_write_no_backup):
                warm(0)
            rows = [
                ("bare open().write() + os.replace", timed(bare_write, n)),
                ("bare write + fsync + os.replace", timed(bare_write_fsync, n)),
                ("write_file, backup of new content", timed(service_write, n)),
                ("write_file, backup of stored content", timed(service_write_same, n)),
                ("write_file, create_backup=False", timed(service_write_no_backup, n)),
            ]
            reads = [("bare open().read() + decode", timed(bare_read, n)),
                     ("read_file", timed(service_read, n))]
            for group in (rows, reads):
                base50, base99 = percentile(group[0][1], .5) * 1000, percentile(group[0][1], .99) * 1000
                for label, samples in group:
                    p50, p99 = percentile(samples, .5) * 1000, percentile(samples, .99) * 1000
                    print(f"{size // 1024:>5}KB {label:<38} {p50:8.3f} {p99:8.3f} {p50 / base50:11.1f} "
                          f"{p99 / base99:11.1f}")
            mean = statistics.mean
            print(f"{'':>7} (means: bare write {mean(rows[0][1]) * 1000:.3f} ms, "
                  f"write_file {mean(rows[2][1]) * 1000:.3f} ms)")
        print(f"backups recorded: {Backup.objects.count()}")


if __name__ == "__main__":
    main()
