"""A cgroup per run: all of a run's processes held together to memory_mb and max_processes.

RLIMIT_AS holds each process on its own and RLIMIT_NPROC counts a uid's processes: neither sees
a run whole (six processes of one run held 2.2 GB at memory_mb 512). A cgroup does. At start the
zygote makes a group of its own below the cgroup it was started in (so whatever holds the server
holds the runs too) and, per run, a child group with the run's limits; the run's first process
moves itself in before any of its code runs, and everything it starts stays in. When the run ends
what is left in the group is killed and the group removed.

cgroup v2 (memory.max, memory.swap.max, memory.oom.group, pids.max, cgroup.kill) where the memory
and pids controllers can be enabled below the zygote's cgroup; else v1 (memory.limit_in_bytes,
memory.memsw.limit_in_bytes, an OOM eventfd that lets the zygote end the whole run, pids.max).
Where neither works `open_cgroups` says why and runs keep only the per-process limits.

Standalone (imported by _zygote.py). Every file is reached through directory descriptors opened
at start: the zygote then pivots into a root without /sys.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import time

PREFIX = "codegen-sandbox-"
CONTROLLERS = ("memory", "pids")
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _read(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _write(dir_fd: int, name: str, value: str) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def _counter(dir_fd: int, name: str, key: str) -> int:
    """A "key value" line of a flat keyed file (memory.events, pids.events, memory.oom_control)."""
    try:
        for line in _read(dir_fd, name).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------- finding the zygote's own cgroup

def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, fs type, super options) of each cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
                found.append((fields[4].replace("\\040", " "), fields[3], tail[0], set(tail[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller ("" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _own_dir(mount_point: str, mount_root: str, own: str) -> str:
    """The directory of the cgroup `own` on a mount of (part of) its hierarchy."""
    if mount_root == "/":
        return mount_point + own.rstrip("/")
    if own == mount_root or own.startswith(mount_root + "/"):
        return mount_point + own[len(mount_root):]
    return mount_point  # a cgroup namespace: this mount shows our own group as its root


def _clean_stale(base_fd: int) -> None:
    """Remove groups of zygotes that died without cleaning up (a SIGKILL); best effort."""
    for name in os.listdir(base_fd):
        if not name.startswith(PREFIX):
            continue
        try:
            owner = int(name[len(PREFIX):].split("-")[0])
            os.kill(owner, 0)
            continue  # its zygote lives
        except ValueError:
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            stale = os.open(name, DIRECTORY, dir_fd=base_fd)
        except OSError:
            continue
        try:
            for child in os.listdir(stale):
                if child.startswith("run-"):
                    _try_rmdir(stale, child)
        finally:
            os.close(stale)
        _try_rmdir(base_fd, name)


def _try_rmdir(dir_fd: int, name: str) -> bool:
    try:
        os.rmdir(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- the zygote's group

class Cgroups:
    """This zygote's group in each hierarchy it uses, and the runs' groups below it."""

    def __init__(self, version: str, bases: dict[str, int], name: str) -> None:
        self.version = version
        self.bases = bases  # controller -> fd of the zygote's own cgroup (one fd for both on v2)
        self.name = name
        self.parents: dict[str, int] = {}  # controller -> fd of the group made here for the runs
        self.leftover: list[RunGroup] = []  # groups not yet empty when their run ended

    def describe(self) -> str:
        return f"cgroup {self.version} ({', '.join(CONTROLLERS)}): a run's processes share its limits"

    def make_parents(self) -> None:
        made: dict[int, int] = {}  # base fd -> the group made below it
        for controller, base in self.bases.items():
            if base not in made:
                _clean_stale(base)
                os.mkdir(self.name, 0o755, dir_fd=base)
                made[base] = os.open(self.name, DIRECTORY, dir_fd=base)
            self.parents[controller] = made[base]
        if self.version == "v2":
            _write(self.parents["memory"], "cgroup.subtree_control", " ".join("+" + c for c in CONTROLLERS))

    def create(self, run_id: int, memory_bytes: int, max_processes: int) -> RunGroup:
        """A group for one run with its limits set; raises OSError if it cannot be made."""
        self.retry_leftover()
        group = RunGroup(self, f"run-{run_id}")
        try:
            group.make(memory_bytes, max_processes)
        except OSError:
            if not group.remove():
                self.leftover.append(group)
            raise
        return group

    def retry_leftover(self) -> None:
        self.leftover = [group for group in self.leftover if not group.remove()]

    def close(self) -> None:
        """At the zygote's exit: the runs' groups (their processes are being killed), then its own."""
        deadline = time.monotonic() + 2
        self.retry_leftover()
        while self.leftover and time.monotonic() < deadline:
            time.sleep(0.02)
            self.retry_leftover()
        for base in set(self.bases.values()):
            _try_rmdir(base, self.name)
        for fd in set(self.parents.values()) | set(self.bases.values()):
            os.close(fd)
        self.parents.clear()
        self.bases.clear()


class RunGroup:
    """One run's cgroup: a directory below the zygote's group in each hierarchy."""

    def __init__(self, cgroups: Cgroups, name: str) -> None:
        self.cgroups = cgroups
        self.name = name
        self.dirs: dict[int, int] = {}  # parent fd -> fd of this group's directory there
        self.procs: list[int] = []  # cgroup.procs of each directory, for the run's first process
        self.oom_event: int | None = None  # v1: an eventfd the kernel signals on an OOM kill

    def dir(self, controller: str) -> int:
        return self.dirs[self.cgroups.parents[controller]]

    def make(self, memory_bytes: int, max_processes: int) -> None:
        for parent in set(self.cgroups.parents.values()):
            os.mkdir(self.name, 0o755, dir_fd=parent)
            self.dirs[parent] = os.open(self.name, DIRECTORY, dir_fd=parent)
        memory = self.dir("memory")
        if self.cgroups.version == "v2":
            _write(memory, "memory.max", str(memory_bytes))
            if _exists(memory, "memory.swap.max"):
                _write(memory, "memory.swap.max", "0")
            _write(memory, "memory.oom.group", "1")  # an OOM kill ends the whole run, not one process
        else:
            _write(memory, "memory.limit_in_bytes", str(memory_bytes))
            if _exists(memory, "memory.memsw.limit_in_bytes"):  # memory + swap: swap is no way around it
                _write(memory, "memory.memsw.limit_in_bytes", str(memory_bytes))
            # v1 kills one process on OOM; the eventfd tells the zygote, which ends the run
            self.oom_event = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            control = os.open("memory.oom_control", os.O_RDONLY | os.O_CLOEXEC, dir_fd=memory)
            try:
                _write(memory, "cgroup.event_control", f"{self.oom_event} {control}")
            finally:
                os.close(control)
        _write(self.dir("pids"), "pids.max", str(max_processes))
        self.procs = [os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=fd) for fd in self.dirs.values()]

    def join(self) -> None:
        """In the run's first process, before any of its code: move in ("0" is the writer)."""
        for fd in self.procs:
            os.write(fd, b"0")

    def close_child_fds(self) -> None:
        """In the zygote once the run is forked: only the run's first process needed cgroup.procs."""
        for fd in self.procs:
            os.close(fd)
        self.procs = []

    def oom_kills(self) -> int:
        if self.cgroups.version == "v2":
            return _counter(self.dir("memory"), "memory.events", "oom_kill")
        return _counter(self.dir("memory"), "memory.oom_control", "oom_kill")

    def pids_refused(self) -> int:
        """Forks (and threads) refused because the group was at pids.max."""
        return _counter(self.dir("pids"), "pids.events", "max")

    def kill(self) -> None:
        """SIGKILL everything in the group (on v2 cgroup.kill does it at once, forks in flight too)."""
        for fd in self.dirs.values():
            if self.cgroups.version == "v2" and _exists(fd, "cgroup.kill"):
                try:
                    _write(fd, "cgroup.kill", "1")
                    continue
                except OSError:
                    pass
            try:
                pids = [int(pid) for pid in _read(fd, "cgroup.procs").split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def remove(self) -> bool:
        """Kill what is left and remove the group; False while processes are still leaving it."""
        self.close_child_fds()
        if self.oom_event is not None:
            os.close(self.oom_event)  # first: removing the group signals it too
            self.oom_event = None
        self.kill()
        for parent, fd in list(self.dirs.items()):
            for _ in range(50):  # killed processes leave the group within moments
                try:
                    os.rmdir(self.name, dir_fd=parent)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break  # left for the next try (retry_leftover)
                    time.sleep(0.002)
                    self.kill()  # without a PID namespace, a process may have forked meanwhile
                    continue
                os.close(fd)
                del self.dirs[parent]
                break
        return not self.dirs


# ---------------------------------------------------------------- detection

def _with_parents(cgroups: Cgroups) -> Cgroups:
    try:
        cgroups.make_parents()
    except OSError:
        cgroups.close()
        raise
    return cgroups


def _open_v2(name: str) -> Cgroups:
    own = _own_paths().get("")
    mount = next(((point, root) for point, root, kind, _ in _mounts() if kind == "cgroup2"), None)
    if own is None or mount is None:
        raise OSError("no cgroup2 mount")
    directory = _own_dir(mount[0], mount[1], own)
    base = os.open(directory, DIRECTORY)
    try:
        available = set(_read(base, "cgroup.controllers").split())
        if not set(CONTROLLERS) <= available:
            raise OSError(f"cgroup v2 at {directory} has no {' or '.join(sorted(set(CONTROLLERS) - available))} "
                          "controller")
        if not set(CONTROLLERS) <= set(_read(base, "cgroup.subtree_control").split()):
            try:
                _write(base, "cgroup.subtree_control", " ".join("+" + c for c in CONTROLLERS))
            except OSError as exc:
                raise OSError(f"cannot enable memory and pids below {directory} ({exc.strerror}): the server's "
                              "cgroup must be able to hand them down (cgroup v2 allows it only from a group "
                              "without processes of its own)") from exc
    except OSError:
        os.close(base)
        raise
    return _with_parents(Cgroups("v2", {controller: base for controller in CONTROLLERS}, name))


def _open_v1(name: str) -> Cgroups:
    own = _own_paths()
    bases: dict[str, int] = {}
    try:
        for controller in CONTROLLERS:
            mount = next(((point, root) for point, root, kind, options in _mounts()
                          if kind == "cgroup" and controller in options), None)
            if mount is None or controller not in own:
                raise OSError(f"no cgroup v1 {controller} hierarchy")
            bases[controller] = os.open(_own_dir(mount[0], mount[1], own[controller]), DIRECTORY)
    except OSError:
        for fd in bases.values():
            os.close(fd)
        raise
    return _with_parents(Cgroups("v1", bases, name))


def open_cgroups() -> tuple[Cgroups | None, str]:
    """This zygote's cgroups, or None; and a sentence saying which, or why none."""
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    reasons = []
    for version, opener in (("v2", _open_v2), ("v1", _open_v1)):
        try:
            cgroups = opener(name)
        except OSError as exc:
            reasons.append(f"{version}: {exc}")
            continue
        return cgroups, cgroups.describe()
    return None, ("no usable cgroup (" + "; ".join(reasons) + "): memory_mb holds per process (RLIMIT_AS) and "
                  "max_processes per uid (RLIMIT_NPROC; as root each run has a uid of its own), not for a run's "
                  "processes together")
