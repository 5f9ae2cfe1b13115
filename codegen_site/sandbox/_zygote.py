"""Warm sandbox runner ("zygote").

Started by codegen_site.sandbox.runner as `python -I _zygote.py <fd> <json settings>`
with a scrubbed environment. It imports pytest once, isolates itself (own mount
and network namespaces when allowed), then forks one child per run request. The
child drops to a per-run uid, applies rlimits and runs the code or pytest
in-process, so a run costs a fork instead of an interpreter start-up.

Standalone on purpose: it must not import the Django project (no settings, no
secrets in this process). Protocol on the inherited unix socket: frames of a
4-byte big-endian length + JSON; a run request carries the write end of the
output pipe as SCM_RIGHTS.
"""

from __future__ import annotations

import array
import ctypes
import json
import os
import resource
import secrets
import selectors
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time

import _pytest.assertion.rewrite  # noqa: F401
import _pytest.python  # noqa: F401
import _pytest.terminal  # noqa: F401
import pytest  # noqa: F401  (pre-import is the point: children inherit it)

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = 1, 0o2000000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # x86_64 and aarch64 share these
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def log(msg: str) -> None:
    sys.stderr.write(f"[sandbox-zygote] {msg}\n")
    sys.stderr.flush()


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def mount(src, target, fstype, flags, data) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


# ---------------------------------------------------------------- isolation setup

def _traversable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & stat.S_IXOTH)
    except OSError:
        return False


def _needed_paths(project_root: str) -> list[str]:
    """Paths the sandboxed interpreter must still reach (stdlib, site-packages, exe)."""
    cands = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))}
    cands.update(p for p in sys.path if p and os.path.isdir(p))
    out = set()
    for p in cands:
        p = os.path.realpath(p)
        # an editable install puts the project on sys.path; the sandbox needs none of it
        if project_root and (p == project_root or p.startswith(project_root + "/")) and not (
                p.startswith(os.path.realpath(sys.prefix) + "/") or p == os.path.realpath(sys.prefix)):
            continue
        if os.path.isdir(p):
            out.add(p)
    return sorted(out)


def _under(p: str, root: str) -> bool:
    return root == "/" or p == root or p.startswith(root + "/")


def _mask(target: str, keep: list[str], opts: str) -> None:
    """Cover `target` with an empty tmpfs, re-attaching the `keep` subtrees at their paths."""
    keep = [k for k in keep if k != target and _under(k, target)]
    keep = [k for k in keep if not any(o != k and _under(k, o) for o in keep)]
    clones = []
    for k in keep:
        fd = _check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(k),
                                 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE), "open_tree")
        clones.append((k, fd))
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    for k, fd in clones:
        os.makedirs(k, 0o755, exist_ok=True)
        _check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, os.fsencode(k),
                            MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
        os.close(fd)


def setup_isolation(settings: dict) -> dict:
    """Enter private namespaces once for the zygote; every child inherits them."""
    info = {"root": os.geteuid() == 0, "netns": False, "mountns": False, "masked": []}
    want_net = not settings.get("force_audit_hook")
    if info["root"]:
        try:
            if want_net:
                unshare(CLONE_NEWNET)
                info["netns"] = True
        except OSError as exc:
            log(f"no network namespace ({exc}); falling back to the audit hook")
        try:
            unshare(CLONE_NEWNS)
            mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            info["mountns"] = True
        except OSError as exc:
            log(f"no mount namespace ({exc}); run dirs stay on the host /tmp")
    elif want_net:
        # Unprivileged: a user namespace (if the kernel allows it) still buys a netns.
        try:
            unshare(CLONE_NEWUSER | CLONE_NEWNET)
            info["netns"] = True
        except OSError as exc:
            log(f"no user/network namespace ({exc}); falling back to the audit hook")

    if info["mountns"]:
        needed = _needed_paths(settings.get("project_root", ""))
        disk = int(settings.get("disk_mb", 256))
        targets: list[tuple[str, str]] = []
        for t in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.isdir(t) and not os.path.islink(t):
                targets.append((t, f"mode=1777,size={disk if t == '/tmp' else 16}m"))
        hide = list(settings.get("hide_paths", [])) + [settings.get("project_root", "")]
        # ancestors the dropped uid cannot traverse (e.g. /root holding pyenv) are masked too
        for p in needed:
            parts = p.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                anc = "/" + "/".join(parts[:i])
                if not _traversable_by_others(anc):
                    hide.append(anc)
                    break
        for h in hide:
            h = os.path.realpath(h) if h else ""
            if h and h != "/" and os.path.isdir(h) and not any(_under(h, t) for t, _ in targets):
                targets.append((h, "mode=755,size=1m"))
        for t, opts in sorted(targets, key=lambda x: x[0].count("/")):
            try:
                _mask(t, needed, opts)
                info["masked"].append(t)
            except OSError as exc:
                log(f"could not mask {t}: {exc}")
    return info


# ---------------------------------------------------------------- protocol

def send_msg(sock: socket.socket, obj: dict) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    head, anc, _flags, _addr = sock.recvmsg(4, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not head:
        raise EOFError
    if len(head) < 4:
        head += recv_exact(sock, 4 - len(head))
    (n,) = struct.unpack(">I", head)
    return json.loads(recv_exact(sock, n)), list(fds)


# ---------------------------------------------------------------- child side

IMPL_SOURCE = ("from solution import *\nimport solution as _sbx_mod\n"
               "globals().update({k: v for k, v in vars(_sbx_mod).items() if not k.startswith('__')})\n"
               "del _sbx_mod\n")


def _inject_solution_names() -> None:
    """Give test_solution the solution's globals before its body runs.

    Done in pytest's import hook instead of a header line so the test file is
    byte-for-byte what the caller wrote (line numbers in failures match)."""
    from _pytest.assertion.rewrite import AssertionRewritingHook
    original = AssertionRewritingHook.exec_module

    def exec_module(self, module):
        if module.__name__ == "test_solution":
            import solution
            module.__dict__.update({k: v for k, v in vars(solution).items() if not k.startswith("__")})
        return original(self, module)

    AssertionRewritingHook.exec_module = exec_module


def _status(obj: dict) -> None:
    try:
        os.write(3, (json.dumps(obj) + "\n").encode())
    except OSError:
        pass


def _audit_hook(event: str, args) -> None:
    # Fallback when no network namespace: refuse networking and anything that
    # could start a fresh interpreter without this hook or poke at raw memory.
    if event in _BLOCKED or event.startswith(("ctypes.", "socket.", "os.exec", "os.posix_spawn")) \
            and event not in ("socket.gethostname", "socket.__new__"):
        raise PermissionError(f"sandbox: {event} is not allowed")


_BLOCKED = {"subprocess.Popen", "os.system", "os.forkpty", "pty.spawn", "os.posix_spawn",
            "os.posix_spawnp", "os.exec", "socket.connect", "socket.bind", "socket.sendto",
            "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname", "ctypes.dlopen",
            "urllib.Request"}


def _run_code(path: str) -> int:
    import traceback
    import types
    with open(path, encoding="utf-8") as f:
        src = f.read()
    mod = types.ModuleType("__main__")
    mod.__file__ = path
    mod.__builtins__ = __builtins__
    sys.modules["__main__"] = mod
    try:
        code = compile(src, path, "exec")
        exec(code, mod.__dict__)
        rc = 0
    except SystemExit as exc:
        if exc.code is None:
            rc = 0
        elif isinstance(exc.code, int):
            rc = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            rc = 1
    except BaseException as exc:  # noqa: BLE001 - report like the interpreter does
        tb = exc.__traceback__
        tb = tb.tb_next if tb is not None and tb.tb_frame.f_code is _run_code.__code__ else tb
        sys.stdout.flush()
        traceback.print_exception(type(exc), exc, tb)
        _status({"exc": type(exc).__name__})
        rc = 1
    try:
        import threading
        threading._shutdown()  # join non-daemon threads like a normal interpreter exit
    except Exception:  # noqa: BLE001
        pass
    return rc


class _Stats:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def pytest_terminal_summary(self, terminalreporter) -> None:
        self.counts = {k: len(v) for k, v in terminalreporter.stats.items()
                       if k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}


# Plugins a one-file run never needs; each costs registration and fixture scanning.
_UNUSED_PLUGINS = ("cacheprovider", "legacypath", "doctest", "junitxml", "pastebin", "stepwise",
                   "setuponly", "setupplan", "nose")


def pytest_args(rundir: str, target: str) -> list[str]:
    args = ["-q", "--rootdir", rundir, "-c", os.path.join(rundir, "pytest.ini"), "--color=no", "--tb=short"]
    for name in _UNUSED_PLUGINS:
        args += ["-p", "no:" + name]
    return args + [target]


def _run_tests(rundir: str) -> int:
    _inject_solution_names()
    stats = _Stats()
    rc = int(pytest.main(pytest_args(rundir, os.path.join(rundir, "test_solution.py")), plugins=[stats]))
    _status({"tests": stats.counts, "pytest_exit": rc})
    return rc


def child_main(req: dict, out_fd: int, status_fd: int, rundir: str, uid: int | None, audit: bool) -> None:
    """Runs in the forked child; never returns."""
    rc = 125
    try:
        import atexit
        atexit._clear()  # the zygote's handlers are not ours to run
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        lim = req["limits"]
        if lim.get("per_run_netns") and not audit:
            try:
                unshare(CLONE_NEWNET)
            except OSError:
                pass  # the zygote-wide namespace still applies

        os.mkdir(rundir, 0o700)
        files = {"solution.py": req["code"]}
        if req.get("tests") is not None:
            files["impl.py"] = IMPL_SOURCE
            files["test_solution.py"] = req["tests"]
            files["pytest.ini"] = "[pytest]\n"
        for name, text in files.items():
            with open(os.path.join(rundir, name), "w", encoding="utf-8") as f:
                f.write(text)
            if uid is not None:
                os.chown(os.path.join(rundir, name), uid, uid)
        if uid is not None:
            os.chown(rundir, uid, uid)

        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.dup2(status_fd, 3)
        os.set_inheritable(3, False)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.closerange(4, 1 << 16)  # drops the zygote socket: it must never reach user code

        mb = 1024 * 1024
        cpu = int(lim["cpu_seconds"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (int(lim["memory_mb"]) * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(lim["max_file_mb"]) * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(lim["max_open_files"]),) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        nproc = int(lim["max_processes"])
        if uid is None and os.geteuid() != 0:
            nproc += _count_own_tasks()  # the limit counts every process of the real uid
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        os.environ.clear()
        os.environ.update({
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": rundir, "TMPDIR": rundir, "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        })
        tempfile.tempdir = None
        os.chdir(rundir)
        sys.path[:0] = [rundir]
        sys.argv = ["solution.py"]
        sys.dont_write_bytecode = True
        import io
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        if audit:
            sys.addaudithook(_audit_hook)

        rc = _run_code("solution.py")
        if rc == 0 and req.get("tests") is not None:
            sys.modules.pop("__main__", None)
            rc = _run_tests(rundir)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
    except BaseException as exc:  # noqa: BLE001 - setup failure, report and die
        try:
            os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(rc)


def _count_own_tasks() -> int:
    me, n = os.getuid(), 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == me:
                    n += len(os.listdir(f"/proc/{d}/task"))
            except OSError:
                pass
    return n


# ---------------------------------------------------------------- zygote loop

def _sweep(uid: int | None, rundir: str) -> None:
    """Forked after a run: kill every process left under the run's uid, remove its dir."""
    try:
        if uid is not None:
            os.setresuid(uid, uid, 0)  # same uid as the target, saved 0 to come back
            for _ in range(2):
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.setresuid(0, 0, 0)
        shutil.rmtree(rundir, ignore_errors=True)
    finally:
        os._exit(0)


def _warm_up(base: str) -> None:
    """Run pytest once so the lazily imported parts are loaded before forking."""
    d = tempfile.mkdtemp(dir=base)
    before_mods, before_path = set(sys.modules), list(sys.path)
    saved = os.dup(1), os.dup(2)
    try:
        with open(os.path.join(d, "test_sbx_warm.py"), "w") as f:
            f.write("def test_ok():\n    assert 1 + 1 == 2\n")
        with open(os.path.join(d, "pytest.ini"), "w") as f:
            f.write("[pytest]\n")
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        pytest.main(pytest_args(d, d), plugins=[_Stats()])
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # pytest's output must not linger in buffers the children inherit
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        for m in set(sys.modules) - before_mods:
            if m.startswith(("test_sbx_warm", "conftest")):
                del sys.modules[m]
        sys.path[:] = before_path
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    settings = json.loads(sys.argv[2])
    info = setup_isolation(settings)
    mode = "netns" if info["netns"] else "audit-hook"
    drop = info["root"]

    base = "/tmp/codegen-sandbox" if info["mountns"] else tempfile.mkdtemp(prefix="codegen-sandbox-")
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o711)  # dropped uids may enter their own run dir but not list others
    _warm_up(base)
    import gc
    gc.collect()
    gc.freeze()  # children skip scanning (and copy-on-write touching) everything loaded so far

    uid_base, uid_count = int(settings.get("uid_base", 61000)), int(settings.get("uid_count", 256))
    free_uids = list(range(uid_base, uid_base + uid_count))
    runs: dict[int, dict] = {}       # pid -> run state
    sweepers: dict[int, int] = {}    # sweeper pid -> uid to free
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, ("ctl", None))
    send_msg(sock, {"event": "hello", "mode": mode, "uid_drop": drop, "pid": os.getpid(),
                    "masked": info["masked"], "mountns": info["mountns"]})

    def start(req: dict, fds: list[int]) -> None:
        rid = req["id"]
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            send_msg(sock, {"event": "exit", "id": rid, "status": None, "error": "bad request"})
            return
        out_fd = fds[0]
        uid = None
        if drop:
            if not free_uids:
                os.close(out_fd)
                send_msg(sock, {"event": "exit", "id": rid, "status": None, "error": "no free sandbox uid"})
                return
            uid = free_uids.pop(0)
        rundir = os.path.join(base, "run-" + secrets.token_hex(8))
        st_r, st_w = os.pipe2(os.O_CLOEXEC)
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            child_main(req, out_fd, st_w, rundir, uid, audit=(mode != "netns"))
        os.close(out_fd)
        os.close(st_w)
        pidfd = os.pidfd_open(pid)
        runs[pid] = {"id": rid, "uid": uid, "rundir": rundir, "status_fd": st_r, "pidfd": pidfd, "t0": t0}
        sel.register(pidfd, selectors.EVENT_READ, ("run", pid))
        send_msg(sock, {"event": "started", "id": rid, "pid": pid})

    def finish(pid: int) -> None:
        run = runs.pop(pid)
        sel.unregister(run["pidfd"])
        os.close(run["pidfd"])
        try:
            os.killpg(pid, signal.SIGKILL)  # leftovers in the group; pid is not reaped yet
        except OSError:
            pass
        _, status, ru = os.wait4(pid, 0)
        os.set_blocking(run["status_fd"], False)
        data = b""
        try:
            while len(data) < 1 << 20:
                chunk = os.read(run["status_fd"], 65536)
                if not chunk:
                    break
                data += chunk
        except BlockingIOError:
            pass
        os.close(run["status_fd"])
        report: dict = {}
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                obj = json.loads(line)
                if isinstance(obj, dict):
                    report.update(obj)
            except ValueError:
                pass
        msg = {"event": "exit", "id": run["id"], "status": status, "cpu": ru.ru_utime + ru.ru_stime,
               "maxrss_kb": ru.ru_maxrss, "report": report}
        if os.WIFSIGNALED(status):
            msg["signal"] = os.WTERMSIG(status)
        else:
            msg["exit_code"] = os.WEXITSTATUS(status)
        send_msg(sock, msg)
        # cleanup after replying: off the caller's critical path
        spid = os.fork()
        if spid == 0:
            _sweep(run["uid"], run["rundir"])
        spidfd = os.pidfd_open(spid)
        sweepers[spid] = run["uid"]
        sel.register(spidfd, selectors.EVENT_READ, ("sweep", (spid, spidfd)))

    def kill(rid: int) -> None:
        for pid, run in runs.items():
            if run["id"] == rid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                # escaped grandchildren (own session) die with the uid sweep after exit

    try:
        while True:
            for key, _ in sel.select():
                kind, data = key.data
                if kind == "ctl":
                    try:
                        req, fds = recv_msg(sock)
                    except (EOFError, ConnectionError):
                        return
                    if req.get("op") == "run":
                        start(req, fds)
                    elif req.get("op") == "kill":
                        kill(req["id"])
                    elif req.get("op") == "ping":
                        send_msg(sock, {"event": "pong"})
                elif kind == "run":
                    finish(data)
                elif kind == "sweep":
                    spid, spidfd = data
                    sel.unregister(spidfd)
                    os.close(spidfd)
                    os.waitpid(spid, 0)
                    uid = sweepers.pop(spid)
                    if uid is not None:
                        free_uids.append(uid)
    finally:
        for pid in list(runs):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        if not info["mountns"]:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, ConnectionError, EOFError):
        pass
