"""The filesystem a run sees, and the namespaces around it (root only).

Standalone (imported by _zygote.py, never by the server). Built once per zygote:
a tmpfs root holding read-only bind mounts of only what the interpreter needs
(/usr, the interpreter's prefixes and site-packages at their own paths), a
generated /etc, a /dev of five harmless devices, then pivot_root into it. Each
run then adds, in its own mount namespace, one size-limited tmpfs at RUN_MOUNT
(its directory, /tmp, /var/tmp and /dev/shm point into it) and a fresh /proc
for its own PID namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import sys
import tempfile

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # the same on x86_64 and aarch64

# Where each run's tmpfs goes; the paths below point into it.
RUN_MOUNT = "/sandbox"
RUN_DIR = RUN_MOUNT + "/run"
RUN_LINKS = {"/tmp": RUN_MOUNT + "/tmp", "/var/tmp": RUN_MOUNT + "/var-tmp", "/dev/shm": RUN_MOUNT + "/shm"}
# Temp dirs that hold a bind (see RootPlan.covered), set in the runner once its root is built.
COVERED: dict[str, list[str]] = {}
DEVICES = ("null", "zero", "full", "random", "urandom")
TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# a run's tmpfs holds at most this many files per MB of disk_mb
FILES_PER_MB = 64
SANDBOX_USER = "sandbox"
HOSTNAME = "sandbox"

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _encode(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def loopback_up() -> None:
    """Bring up `lo` in the current network namespace (a new one starts with it down)."""
    import socket
    import struct
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(probe, siocgifflags, request))[1]
        fcntl.ioctl(probe, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def set_hostname(name: str) -> None:
    encoded = name.encode()
    _check(libc.sethostname(encoded, len(encoded)), "sethostname")


def setns(fd: int, kind: int) -> None:
    _check(libc.setns(fd, kind), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data)),
           f"mount {target}")


def bind_read_only(target: str, writable: bool = False) -> None:
    """Remount a bind mount read-only, without setuid or device files (devices keep writes)."""
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (MS_NOEXEC if writable else MS_RDONLY | MS_NODEV)
    mount(None, target, None, flags)


# ---------------------------------------------------------------- uid ranges

def lock_dir() -> str:
    """/run/codegen-sandbox when it can be made, else the temp dir (unprivileged servers)."""
    for path in ("/run/codegen-sandbox", os.path.join(tempfile.gettempdir(), "codegen-sandbox-locks")):
        try:
            os.makedirs(path, 0o700, exist_ok=True)
            return path
        except OSError:
            continue
    raise OSError("no directory for the sandbox uid locks")


def claim_uid_range(uid_base: int, uid_count: int, uid_slots: int) -> tuple[int, int]:
    """Lock the first free block of `uid_count` uids at or after `uid_base`.

    Blocks are aligned to multiples of uid_count, so servers with different bases
    but the same uid_count share block names and never overlap. Returns (first uid,
    lock fd); the lock holds while the fd is open (the zygote's life)."""
    directory = lock_dir()
    first_block = -(-uid_base // uid_count)
    for block in range(first_block, first_block + uid_slots):
        start = block * uid_count
        fd = os.open(os.path.join(directory, f"uids-{start}-{uid_count}.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return start, fd
    raise OSError(f"all {uid_slots} sandbox uid ranges from {uid_base} are claimed by other servers")


# ---------------------------------------------------------------- the root, once per zygote

def _under(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


def interpreter_paths() -> list[str]:
    """Directories the interpreter reads: prefixes, the executable's directory, sys.path
    entries inside them and site-packages anywhere (an editable install's project
    directory on sys.path is left out)."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    prefixes.add(os.path.dirname(os.path.realpath(sys.executable)))
    wanted = set(prefixes)
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real and os.path.isdir(real) and (
                any(_under(real, p) for p in prefixes) or os.path.basename(real) in ("site-packages", "dist-packages")):
            wanted.add(real)
    existing = sorted(p for p in wanted if os.path.isdir(p))
    # a directory inside another bound one comes with it
    return [p for p in existing if not any(o != p and _under(p, o) for o in existing)]


def _etc_files(uid_first: int, uid_count: int) -> dict[str, str]:
    users = [f"root:x:0:0:root:{RUN_DIR}:/bin/sh"]
    groups = ["root:x:0:"]
    for uid in range(uid_first, uid_first + uid_count):
        users.append(f"{SANDBOX_USER}:x:{uid}:{uid}:{SANDBOX_USER}:{RUN_DIR}:/bin/sh")
        groups.append(f"{SANDBOX_USER}:x:{uid}:")
    return {
        "passwd": "\n".join(users) + "\n",
        "group": "\n".join(groups) + "\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    }


class RootPlan:
    """What goes into the root: bind mounts (host path → same path), symlinks, files."""

    def __init__(self, uid_first: int, uid_count: int) -> None:
        self.binds: list[str] = []
        self.links: dict[str, str] = dict(RUN_LINKS)
        self.dirs = ["/proc", RUN_MOUNT, "/etc", "/var", "/dev"]
        self.files = {"/etc/" + name: text for name, text in _etc_files(uid_first, uid_count).items()}
        if os.path.isdir("/usr"):
            self.binds.append("/usr")
        for path in TOP_LEVEL_LINKS:
            if os.path.islink(path):
                self.links[path] = os.readlink(path)
            elif os.path.isdir(path):
                self.binds.append(path)
        for path in interpreter_paths():
            if not any(_under(path, b) for b in self.binds):
                self.binds.append(path)
        # A bind inside a temp dir (a checkout under /tmp brings its venv there) keeps that
        # dir a real directory of the root: each run covers it with its own private one and
        # puts the bind back on top (mount_run).
        self.covered: dict[str, list[str]] = {}
        for temp in RUN_LINKS:
            inside = [b for b in self.binds if _under(b, temp)]
            if inside:
                del self.links[temp]
                self.covered[temp] = inside
        self.devices = ["/dev/" + name for name in DEVICES if os.path.exists("/dev/" + name)]
        self.links.update({"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
                           "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"})


def _open_tree(path: str) -> int:
    return _check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(path), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
                  f"open_tree {path}")


def _move_mount(fd: int, target: str) -> None:
    _check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH),
           f"move_mount {target}")


def can_build_root(machine: str | None) -> bool:
    return machine in SYS_PIVOT_ROOT


def build_root(plan: RootPlan, machine: str) -> None:
    """Enter a new mount namespace whose root is the planned tree; the host's tree is gone.

    Sources are cloned as detached mounts first, so covering the staging directory
    (the host /tmp, in this namespace only) cannot hide one of them."""
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    clones = [(path, _open_tree(path)) for path in plan.binds + plan.devices]
    stage = "/tmp"
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
    for directory in plan.dirs:
        os.makedirs(stage + directory, 0o755, exist_ok=True)
    for path, fd in clones:
        target = stage + path
        os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        if path in plan.devices:
            with open(target, "w"):
                pass
        else:
            os.makedirs(target, 0o755, exist_ok=True)
        _move_mount(fd, target)
        os.close(fd)
        bind_read_only(target, writable=path in plan.devices)
    for path, destination in plan.links.items():
        os.makedirs(os.path.dirname(stage + path), 0o755, exist_ok=True)
        os.symlink(destination, stage + path)
    for path, content in plan.files.items():
        with open(stage + path, "w") as handle:
            handle.write(content)
        os.chmod(stage + path, 0o644)
    os.chdir(stage)
    _check(libc.syscall(SYS_PIVOT_ROOT[machine], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    COVERED.update(plan.covered)


def mount_run(disk_mb: int, uid: int) -> None:
    """In fresh mount and IPC namespaces: the run's tmpfs and a /proc of its PID namespace."""
    unshare(CLONE_NEWNS | CLONE_NEWIPC)  # System V IPC objects are private to the run too
    mount_run_space(disk_mb, uid)
    for temp, binds in COVERED.items():
        clones = [(path, _open_tree(path)) for path in binds]
        mount(RUN_LINKS[temp], temp, None, MS_BIND)
        for path, fd in clones:
            os.makedirs(path, 0o755, exist_ok=True)
            _move_mount(fd, path)
            os.close(fd)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_run_space(disk_mb: int, uid: int) -> None:
    """The tmpfs at RUN_MOUNT with the run directory and the private temp directories."""
    # inodes are capped too: a flood of empty files costs kernel memory, not tmpfs size
    mount("tmpfs", RUN_MOUNT, "tmpfs", MS_NOSUID | MS_NODEV,
          f"mode=0755,size={disk_mb}m,nr_inodes={disk_mb * FILES_PER_MB}")
    os.mkdir(RUN_DIR, 0o700)
    os.chown(RUN_DIR, uid, uid)
    for target in RUN_LINKS.values():
        os.mkdir(target)
        os.chmod(target, 0o1777)


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
