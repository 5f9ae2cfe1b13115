"""Warm sandbox runner ("zygote").

Started by codegen_site.sandbox.runner as `python -I _zygote.py <fd> <json settings>`
with an empty environment. As root it claims a uid range, enters its own network
and mount namespaces, pivots into a minimal read-only root (_rootfs.py) and imports
pytest once; then it forks one child per run. Each child is PID 1 of a fresh PID
namespace with its own mount namespace (one tmpfs for its files, its own /proc),
moves into the run's own cgroup (_cgroup.py: memory_mb and max_processes for all
the run's processes together, where the machine allows), drops to a uid of the
range, sets rlimits, no_new_privs and a seccomp filter (_seccomp.py), and runs the
code and pytest in-process, watched by _witness.py. When it exits the kernel ends
everything the run started.

Without root (or with force_audit_hook) there are no mount or PID namespaces:
run directories live on the host's temp dir and an audit hook refuses
networking and subprocesses, best effort.

Standalone on purpose: it must not import the Django project (no settings, no
secrets in this process); its settings come as JSON from the runner, already typed
(codegen_site.sandbox.settings). Protocol on
the inherited unix socket: _wire.py.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import selectors
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cgroup  # noqa: E402
import _rootfs  # noqa: E402
import _seccomp  # noqa: E402
import _witness  # noqa: E402
from _wire import receive_message, send_message  # noqa: E402

del sys.path[0]

import pytest  # noqa: E402  (pre-import is the point: children inherit it)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
MEGABYTE = 1024 * 1024
STATUS_FD = 3
STATUS_LIMIT = 4 << 20  # status bytes kept per run; beyond that the verdict fails
SOCKET_DENIED = "sandbox: network sockets are not allowed"
SOCKET_INIT = socket.socket.__init__.__code__


def log(message: str) -> None:
    sys.stderr.write(f"[sandbox-zygote] {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- status lines

def parse_status(data: bytes) -> dict:
    """The run's status lines as a report; lines without the run's nonce are counted as forged.

    The first line announces the nonce: the child writes it before any code runs."""
    report: dict = {"exc": None, "tests": [], "claims": [], "tamper": [], "collect_errors": [],
                    "forged": 0, "done": False, "pytest_exit": None, "overflow": len(data) >= STATUS_LIMIT}
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        report["forged"] += 1  # an unterminated line is never ours
        lines.pop()
    nonce = None
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            report["forged"] += 1
            continue
        if number == 0 and record.get("hello") == 1:
            nonce = record.get("nonce")
            continue
        if nonce is None or record.get("nonce") != nonce:
            report["forged"] += 1
        elif "outcome" in record:
            report["tests"].append({"test": record.get("test"), "when": record.get("when"),
                                    "outcome": record["outcome"], "duration": record.get("duration"),
                                    "message": record.get("message", "")})
        elif "claimed" in record:
            report["claims"].append([record.get("test"), record.get("when"), record["claimed"]])
        elif "tamper" in record:
            report["tamper"].append(str(record["tamper"]))
        elif "collect_error" in record:
            report["collect_errors"].append({"test": record["collect_error"], "message": record.get("message", "")})
        elif "done" in record:
            report["done"] = True
            report["pytest_exit"] = record.get("pytest_exit")
        elif "exc" in record:
            report["exc"] = record["exc"]
    return report


# ---------------------------------------------------------------- the child

IMPL_SOURCE = ("from solution import *\nimport solution as _sbx_mod\n"
               "globals().update({k: v for k, v in vars(_sbx_mod).items() if not k.startswith('__')})\n"
               "del _sbx_mod\n")

# Plugins a one-file run never needs; each costs registration and fixture scanning.
UNUSED_PLUGINS = ("cacheprovider", "legacypath", "doctest", "junitxml", "pastebin", "stepwise",
                  "setuponly", "setupplan", "nose")


def pytest_args(rundir: str, target: str) -> list[str]:
    args = ["-q", "--rootdir", rundir, "-c", os.path.join(rundir, "pytest.ini"), "--color=no", "--tb=short"]
    for name in UNUSED_PLUGINS:
        args += ["-p", "no:" + name]
    return args + [target]


def inject_solution_names() -> None:
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


def socket_hook(allowed_families: frozenset):
    """An audit hook naming the reason when code opens a socket the seccomp filter refuses."""
    def hook(event: str, args) -> None:
        if event == "socket.__new__" and args[1] not in allowed_families:
            try:
                caller = sys._getframe(1)
            except ValueError:  # created from C with no Python caller: seccomp still decides
                return
            # sockets around an existing descriptor (socketpair, accept, fromfd) are fine
            if caller.f_code is SOCKET_INIT and caller.f_locals.get("fileno") is not None:
                return
            raise PermissionError(SOCKET_DENIED)
    return hook


FALLBACK_BLOCKED = {"subprocess.Popen", "os.system", "os.forkpty", "pty.spawn", "os.posix_spawn",
                    "os.posix_spawnp", "os.exec", "socket.connect", "socket.bind", "socket.sendto",
                    "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname", "ctypes.dlopen",
                    "urllib.Request"}


def fallback_hook(event: str, args) -> None:
    # Without namespaces: refuse networking and anything that could start a fresh
    # interpreter without this hook or poke at raw memory.
    if event in FALLBACK_BLOCKED or event.startswith(("ctypes.", "socket.", "os.exec", "os.posix_spawn")) \
            and event not in ("socket.gethostname", "socket.__new__"):
        raise PermissionError(f"sandbox: {event} is not allowed")


class Child:
    """One run, in the forked child: set up, run the code, run the tests, exit."""

    def __init__(self, request: dict, output_fd: int, status_fd: int, rundir: str, uid: int | None,
                 zygote: Zygote, group: _cgroup.RunGroup | None) -> None:
        self.request = request
        self.group = group
        self.limits = request["limits"]
        self.output_fd = output_fd
        self.status_fd = status_fd
        self.rundir = rundir
        self.uid = uid
        self.isolated = zygote.isolated
        self.netns = zygote.netns
        self.taken = zygote.taken  # pytest's identities, taken in the zygote before any code ran

    def main(self) -> None:
        """Never returns."""
        exit_code = 125
        try:
            self.prepare()
            exit_code = self.run()
        except BaseException as exc:  # noqa: BLE001 - setup failure, report and die
            try:
                os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(exit_code)

    def prepare(self) -> None:
        if self.group is not None:
            self.group.join()  # first: whatever this process does or starts from here is the run's
        import atexit
        atexit._clear()  # the zygote's handlers are not ours to run
        os.setsid()
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.isolated:
            _rootfs.mount_run(self.limits["disk_mb"], self.uid)
            if self.limits["per_run_netns"]:
                _rootfs.unshare(_rootfs.CLONE_NEWNET)
                # a run allowed IP sockets may talk to itself, never to another run
                if {socket.AF_INET, socket.AF_INET6} & set(self.limits["socket_families"]):
                    _rootfs.loopback_up()
        else:
            if self.netns and self.limits["per_run_netns"]:
                try:  # unprivileged in a user namespace: the runner-wide namespace still applies
                    _rootfs.unshare(_rootfs.CLONE_NEWNET)
                except OSError:
                    pass
            os.mkdir(self.rundir, 0o700)
            self.give(self.rundir)
        self.write_files()
        self.redirect()
        self.set_limits()
        if self.uid is not None:
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
        # after the uid change, which clears it: a dying zygote takes the run with it
        _rootfs.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _seccomp.install(tuple(self.limits["socket_families"]))
        self.set_environment()
        sys.addaudithook(socket_hook(frozenset(self.limits["socket_families"])))
        if not self.isolated:
            sys.addaudithook(fallback_hook)

    def give(self, path: str) -> None:
        """Hand a file to the run's uid (nothing to do when the run keeps the runner's own uid)."""
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)

    def write_files(self) -> None:
        files = {"solution.py": self.request["code"]}
        if self.request.get("tests") is not None:
            files["impl.py"] = IMPL_SOURCE
            files["test_solution.py"] = self.request["tests"]
            files["pytest.ini"] = "[pytest]\n"
        for name, text in files.items():
            path = os.path.join(self.rundir, name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.give(path)

    def redirect(self) -> None:
        os.dup2(self.output_fd, 1)
        os.dup2(self.output_fd, 2)
        os.dup2(self.status_fd, STATUS_FD)
        os.set_inheritable(STATUS_FD, False)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.closerange(STATUS_FD + 1, 1 << 16)  # drops the zygote socket and lock: never for user code

    def set_limits(self) -> None:
        limits = self.limits
        set_rlimit(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1)
        # per process; the run's cgroup (if any) holds all its processes together
        set_rlimit(resource.RLIMIT_AS, limits["memory_mb"] * MEGABYTE)
        set_rlimit(resource.RLIMIT_FSIZE, limits["max_file_mb"] * MEGABYTE)
        set_rlimit(resource.RLIMIT_NOFILE, limits["max_open_files"])
        set_rlimit(resource.RLIMIT_CORE, 0)
        processes = limits["max_processes"]
        if self.uid is None and os.geteuid() != 0:
            processes += count_own_tasks()  # the limit counts every process of the real uid
        if self.group is not None:
            processes += 1  # pids.max refuses first, and counts it (the run's result says so)
        set_rlimit(resource.RLIMIT_NPROC, processes)

    def set_environment(self) -> None:
        import io
        os.environ.clear()
        os.environ.update({
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": self.rundir, "TMPDIR": self.rundir, "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        })
        tempfile.tempdir = None
        os.chdir(self.rundir)
        sys.path[:0] = [self.rundir]
        sys.argv = ["solution.py"]
        sys.dont_write_bytecode = True
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr

    def run(self) -> int:
        # before any of the code runs: the channel and its nonce
        send = _witness.open_channel(STATUS_FD)
        taken = self.taken
        exit_code, exception = run_code("solution.py")
        if exception:
            send({"exc": exception})
        if exit_code == 0 and self.request.get("tests") is not None:
            sys.modules.pop("__main__", None)
            exit_code = run_tests(self.rundir, send, taken)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        return exit_code


def run_code(path: str) -> tuple[int, str | None]:
    """Run a script as __main__: (exit code, name of the exception that ended it).

    Takes nothing of the status channel: this frame is the code's immediate caller."""
    import traceback
    import types
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    exception = None
    try:
        exec(compile(source, path, "exec"), module.__dict__)
        exit_code = 0
    except SystemExit as exc:
        if exc.code is None:
            exit_code = 0
        elif isinstance(exc.code, int):
            exit_code = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            exit_code = 1
    except BaseException as exc:  # noqa: BLE001 - report like the interpreter does
        trace = exc.__traceback__
        if trace is not None and trace.tb_frame.f_code is run_code.__code__:
            trace = trace.tb_next
        sys.stdout.flush()
        traceback.print_exception(type(exc), exc, trace)
        exception = type(exc).__name__
        exit_code = 1
    try:
        import threading
        threading._shutdown()  # join non-daemon threads like a normal interpreter exit
    except Exception:  # noqa: BLE001
        pass
    return exit_code, exception


def run_tests(rundir: str, send, taken: tuple) -> int:
    inject_solution_names()
    witness = _witness.Witness(send, taken)
    exit_code = int(pytest.main(pytest_args(rundir, os.path.join(rundir, "test_solution.py")), plugins=[witness]))
    witness.check()
    send({"done": 1, "pytest_exit": exit_code})
    return exit_code


def set_rlimit(kind: int, soft: int, hard: int | None = None) -> None:
    """setrlimit, held under the limit the runner itself got: without CAP_SYS_RESOURCE a
    higher hard limit is refused, and a run must not fail to start over it."""
    ceiling = resource.getrlimit(kind)[1]
    hard = soft if hard is None else hard
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))


def count_own_tasks() -> int:
    me, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == me:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                pass
    return count


# ---------------------------------------------------------------- the zygote

class Run:
    """A run in flight, as the zygote sees it."""

    def __init__(self, run_id: int, pid: int, uid: int | None, rundir: str, status_fd: int, pidfd: int,
                 group: _cgroup.RunGroup | None) -> None:
        self.run_id = run_id
        self.group = group
        self.oom = False
        self.pid = pid
        self.uid = uid
        self.rundir = rundir
        self.status_fd = status_fd
        self.pidfd = pidfd
        self.status = bytearray()


class Zygote:
    def __init__(self, control: socket.socket, settings: dict) -> None:
        self.control = control
        self.settings = settings
        root = os.geteuid() == 0
        self.isolated = False
        self.netns = False
        self.drop_uid = root
        self.free_uids: list[int] = []
        self.pidns_fd: int | None = None
        self.root_seconds: float | None = None
        self.taken: tuple = ()  # set by warm_up, once pytest is fully loaded
        self.base = ""
        self.runs: dict[int, Run] = {}
        self.selector = selectors.DefaultSelector()
        self.seccomp = _seccomp.machine() if _seccomp.machine() in _seccomp.SYSCALLS else None
        if self.seccomp is None:
            log(f"no seccomp table for {_seccomp.machine()}; runs go without the filter")
        # before isolate(): the private root has no /sys (the cgroups are kept as open directories)
        self.cgroups, self.cgroup_note = _cgroup.open_cgroups()
        if root:
            first, self.uid_lock = _rootfs.claim_uid_range(
                settings["uid_base"], settings["uid_count"], settings["uid_slots"])
            self.free_uids = list(range(first, first + settings["uid_count"]))
        if root and not settings["force_audit_hook"]:
            self.isolate()
        elif not root and not settings["force_audit_hook"]:
            try:  # unprivileged: a user namespace (if the kernel allows it) still buys a netns
                _rootfs.unshare(_rootfs.CLONE_NEWUSER | _rootfs.CLONE_NEWNET)
                self.netns = True
            except OSError as exc:
                log(f"no user/network namespace ({exc}); falling back to the audit hook")
        if not self.isolated:
            self.base = tempfile.mkdtemp(prefix="codegen-sandbox-")
            os.chmod(self.base, 0o711)  # dropped uids may enter their own run dir but not list others
            # without a PID namespace a run's orphans would go to the host's init, which may leave
            # them zombies for a while, counted against the next run of their uid (RLIMIT_NPROC)
            _rootfs.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.warm_up()

    def isolate(self) -> None:
        """Own network and mount namespaces and the minimal root; fall back if namespaces are refused."""
        if not _rootfs.can_build_root(_seccomp.machine()):
            log(f"no pivot_root number for {_seccomp.machine()}; falling back to the audit hook")
            return
        try:
            _rootfs.unshare(_rootfs.CLONE_NEWNET | _rootfs.CLONE_NEWUTS)
        except OSError as exc:
            log(f"no namespaces ({exc}); falling back to the audit hook")
            return
        self.netns = True
        _rootfs.set_hostname(_rootfs.HOSTNAME)  # the host's name stays the host's
        self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        started = time.perf_counter()
        _rootfs.build_root(_rootfs.RootPlan(self.free_uids[0], len(self.free_uids)), _seccomp.machine())
        self.root_seconds = time.perf_counter() - started  # reported in hello for bench/code_run.py
        self.isolated = True

    def mode(self) -> str:
        return "netns" if self.netns else "audit-hook"

    def warm_up(self) -> None:
        """Run pytest once so the lazily imported parts are loaded before forking."""
        if self.isolated:
            _rootfs.mount_run_space(4, os.getuid())
            directory = _rootfs.RUN_DIR
            # /tmp of the root may be a read-only directory (see _rootfs.RootPlan.covered)
            tempfile.tempdir = _rootfs.RUN_LINKS["/tmp"]
        else:
            directory = tempfile.mkdtemp(dir=self.base)
        modules_before, path_before = set(sys.modules), list(sys.path)
        saved = os.dup(1), os.dup(2)
        try:
            with open(os.path.join(directory, "test_sbx_warm.py"), "w") as handle:
                handle.write("def test_ok():\n    assert 1 + 1 == 2\n")
            with open(os.path.join(directory, "pytest.ini"), "w") as handle:
                handle.write("[pytest]\n")
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
            pytest.main(pytest_args(directory, directory), plugins=[_witness.Witness(lambda record: None, ())])
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()  # pytest's output must not linger in buffers the children inherit
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for name in set(sys.modules) - modules_before:
                if name.startswith(("test_sbx_warm", "conftest")):
                    del sys.modules[name]
            sys.path[:] = path_before
            if self.isolated:
                os.chdir("/")
                tempfile.tempdir = None
                _rootfs.libc.umount2(os.fsencode(_rootfs.RUN_MOUNT), _rootfs.MNT_DETACH)
            else:
                _rootfs.remove_tree(directory)
        self.taken = _witness.snapshot()
        import gc
        gc.collect()
        gc.freeze()  # children skip scanning (and copy-on-write touching) everything loaded so far

    def serve(self) -> None:
        self.selector.register(self.control, selectors.EVENT_READ, ("control", None))
        send_message(self.control, {"event": "hello", "mode": self.mode(), "uid_drop": self.drop_uid,
                                    "isolated": self.isolated, "seccomp": self.seccomp,
                                    "root_seconds": self.root_seconds,
                                    "cgroup": self.cgroups.version if self.cgroups else None,
                                    "cgroup_note": self.cgroup_note})
        try:
            while True:
                for key, _ in self.selector.select():
                    kind, pid = key.data
                    if kind == "control":
                        try:
                            request, fds = receive_message(self.control)
                        except (EOFError, ConnectionError):
                            return
                        if request.get("op") == "run":
                            self.start(request, fds)
                        elif request.get("op") == "kill":
                            self.kill(request["id"])
                    elif kind == "status":
                        self.read_status(self.runs[pid])
                    elif kind == "exit":
                        self.finish(pid)
                    elif kind == "oom" and pid in self.runs:  # not if its exit came first in this batch
                        self.out_of_memory(self.runs[pid])
        finally:
            for pid, run in list(self.runs.items()):
                self.signal(pid)
                if run.group is not None:
                    self.cgroups.leftover.append(run.group)
            if self.cgroups is not None:
                self.cgroups.close()
            if self.base:
                _rootfs.remove_tree(self.base)

    def refuse(self, run_id: int, reason: str, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        send_message(self.control, {"event": "exit", "id": run_id, "status": None, "error": reason})

    def start(self, request: dict, fds: list[int]) -> None:
        run_id = request["id"]
        if len(fds) != 1:
            self.refuse(run_id, "bad request", fds)
            return
        _seccomp.program(tuple(request["limits"]["socket_families"]))  # built here once, not in every child
        if self.drop_uid and not self.free_uids:
            self.refuse(run_id, "no free sandbox uid", fds)
            return
        output_fd = fds[0]
        group = None
        if self.cgroups is not None:
            limits = request["limits"]
            try:
                group = self.cgroups.create(run_id, limits["memory_mb"] * MEGABYTE, limits["max_processes"])
            except OSError as exc:  # no run without its limits
                self.refuse(run_id, f"could not make the run's cgroup ({exc})", fds)
                return
        uid = self.free_uids.pop(0) if self.drop_uid else None
        rundir = _rootfs.RUN_DIR if self.isolated else os.path.join(self.base, "run-" + secrets.token_hex(8))
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        if self.isolated:
            _rootfs.unshare(_rootfs.CLONE_NEWPID)  # the next child is PID 1 of a new namespace
        try:
            pid = os.fork()
            if pid == 0:
                Child(request, output_fd, status_write, rundir, uid, self, group).main()
        except OSError as exc:
            os.close(status_read)
            os.close(status_write)
            if uid is not None:
                self.free_uids.append(uid)
            if group is not None and not group.remove():
                self.cgroups.leftover.append(group)
            self.refuse(run_id, f"could not start the run ({exc.strerror})", [output_fd])
            return
        finally:
            if self.isolated:
                _rootfs.setns(self.pidns_fd, _rootfs.CLONE_NEWPID)
        os.close(output_fd)
        os.close(status_write)
        os.set_blocking(status_read, False)
        run = Run(run_id, pid, uid, rundir, status_read, os.pidfd_open(pid), group)
        self.runs[pid] = run
        self.selector.register(run.pidfd, selectors.EVENT_READ, ("exit", pid))
        self.selector.register(status_read, selectors.EVENT_READ, ("status", pid))
        if group is not None:
            group.close_child_fds()
            if group.oom_event is not None:
                self.selector.register(group.oom_event, selectors.EVENT_READ, ("oom", pid))

    def out_of_memory(self, run: Run) -> None:
        """v1 only (v2's memory.oom.group does this itself): the kernel killed one process of the
        run at its memory limit; the run ends whole, as a run that ran out of memory."""
        self.forget(run.group.oom_event)
        run.oom = True
        self.signal(run.pid)
        run.group.kill()

    def read_status(self, run: Run) -> None:
        try:
            while True:
                chunk = os.read(run.status_fd, 65536)
                if not chunk:
                    self.forget(run.status_fd)
                    return
                room = STATUS_LIMIT - len(run.status)
                run.status += chunk[:room]
        except BlockingIOError:
            pass

    def forget(self, fd: int) -> None:
        if self.selector.get_map().get(fd) is not None:
            self.selector.unregister(fd)

    def finish(self, pid: int) -> None:
        run = self.runs.pop(pid)
        self.selector.unregister(run.pidfd)
        os.close(run.pidfd)
        if not self.isolated:
            self.signal(pid)  # leftovers in its process group; the pid is not reaped yet
        _, status, usage = os.wait4(pid, 0)
        self.read_status(run)
        self.forget(run.status_fd)
        os.close(run.status_fd)
        message = {"event": "exit", "id": run.run_id, "status": status, "cpu": usage.ru_utime + usage.ru_stime,
                   "report": parse_status(bytes(run.status))}
        if os.WIFSIGNALED(status):
            message["signal"] = os.WTERMSIG(status)
        else:
            message["exit_code"] = os.WEXITSTATUS(status)
        if run.group is not None:
            message["oom"] = run.oom or run.group.oom_kills() > 0
            message["pids_refused"] = run.group.pids_refused()
            if run.group.oom_event is not None:
                self.forget(run.group.oom_event)
            if not run.group.remove():
                self.cgroups.leftover.append(run.group)
        if not self.isolated:
            self.reap_orphans()
        send_message(self.control, message)
        if run.uid is not None:
            # isolated: PID 1 is reaped, so the kernel has ended every process of the run
            self.free_uids.append(run.uid)
        if not self.isolated:
            _rootfs.remove_tree(run.rundir)

    def reap_orphans(self) -> None:
        """Reap the dead processes runs left behind (the zygote is their subreaper); runs
        themselves are reaped in finish(), so their pids are left alone."""
        children: set[int] = set()
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as handle:
                    children.update(int(pid) for pid in handle.read().split())
            except OSError:
                pass
        for pid in children - set(self.runs):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def signal(self, pid: int) -> None:
        try:
            if self.isolated:
                os.kill(pid, signal.SIGKILL)  # PID 1 of the run's namespace: the rest follows
            else:
                os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    def kill(self, run_id: int) -> None:
        for pid, run in self.runs.items():
            if run.run_id == run_id:
                self.signal(pid)
                if run.group is not None:
                    run.group.kill()  # what left the process group (without a PID namespace)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    settings = json.loads(sys.argv[2])
    try:
        zygote = Zygote(control, settings)
    except Exception as exc:  # noqa: BLE001 - tell the runner why instead of dying silently
        send_message(control, {"event": "hello", "error": f"{type(exc).__name__}: {exc}"})
        raise
    zygote.serve()


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, ConnectionError, EOFError):
        pass
