"""The seccomp filter a run lives under: a classic BPF program built with ctypes.

Standalone (imported by _zygote.py, never by the server). The filter denies what a
Python program with tests never needs and what would let it reach past its
namespaces: new sockets outside an allowed family list (EPERM, so the code sees a
normal error), ptrace, every mount API, namespace creation, keyrings, bpf,
perf, kernel modules, kexec, cross-process memory access, userfaultfd and
io_uring (the process is killed with SIGSYS). clone3 answers ENOSYS so glibc
falls back to clone, whose flags the filter can read.
"""

from __future__ import annotations

import ctypes
import errno
import platform

# Architectures the tables below cover; seccomp_data.arch must match or the process dies.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# Syscall numbers as (x86_64, aarch64): x86_64 has its own table, aarch64 uses asm-generic.
ARCHITECTURES = ("x86_64", "aarch64")
SYSCALL_NUMBERS = {
    "socket": (41, 198), "ptrace": (101, 117), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "open_tree": (428, 428), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442), "unshare": (272, 97), "setns": (308, 268), "clone": (56, 220),
    "clone3": (435, 435), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
}
SYSCALLS = {arch: {name: numbers[index] for name, numbers in SYSCALL_NUMBERS.items()}
            for index, arch in enumerate(ARCHITECTURES)}

# Killed outright: nothing a test needs, everything an escape would.
KILLED = ("ptrace", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
          "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns", "keyctl", "add_key",
          "request_key", "bpf", "perf_event_open", "kexec_load", "kexec_file_load", "init_module",
          "finit_module", "delete_module", "process_vm_readv", "process_vm_writev", "userfaultfd",
          "io_uring_setup", "io_uring_enter", "io_uring_register")

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NEW_ANY = 0x7E020000

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# classic BPF opcodes
BPF_LD_W_ABS = 0x20        # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15           # BPF_JMP | BPF_JEQ | BPF_K
BPF_JSET_K = 0x45          # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06           # BPF_RET | BPF_K

# offsets in struct seccomp_data (little-endian: the low word of args[0] comes first)
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0_LOW = 0, 4, 16


libc = ctypes.CDLL(None, use_errno=True)


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def machine() -> str | None:
    """The filter's table name for this machine, or None when there is no table for it."""
    name = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name) if name else None


class _Program:
    """A list of BPF instructions whose jumps name labels; offsets are resolved at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def load(self, offset: int) -> None:
        self.code.append((BPF_LD_W_ABS, 0, 0, offset))

    def jump(self, op: int, value: int, when_true, when_false) -> None:
        self.code.append((op, when_true, when_false, value))

    def ret(self, action: int) -> None:
        self.code.append((BPF_RET_K, 0, 0, action))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def offset(self, index: int, target) -> int:
        """A jump target as the distance from the instruction after `index`."""
        if isinstance(target, int):
            return target
        distance = self.labels[target] - index - 1
        if not 0 <= distance <= 255:
            raise ValueError(f"jump to {target} out of range")
        return distance

    def assemble(self) -> list[tuple[int, int, int, int]]:
        return [(op, self.offset(index, when_true), self.offset(index, when_false), value)
                for index, (op, when_true, when_false, value) in enumerate(self.code)]


def build_filter(arch: str, socket_families: tuple[int, ...] = ()) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) tuples for `arch` ("x86_64" or "aarch64")."""
    numbers = SYSCALLS[arch]
    program = _Program()
    program.load(OFFSET_ARCH)
    program.jump(BPF_JEQ_K, AUDIT_ARCH[arch], 0, "kill")
    program.load(OFFSET_NR)
    if arch == "x86_64":
        program.jump(BPF_JSET_K, X32_SYSCALL_BIT, "kill", 0)
    program.jump(BPF_JEQ_K, numbers["socket"], "socket", 0)
    program.jump(BPF_JEQ_K, numbers["clone"], "clone", 0)
    program.jump(BPF_JEQ_K, numbers["clone3"], "nosys", 0)
    for name in KILLED:
        program.jump(BPF_JEQ_K, numbers[name], "kill", 0)
    program.ret(SECCOMP_RET_ALLOW)

    program.label("socket")
    program.load(OFFSET_ARG0_LOW)
    for family in socket_families:
        program.jump(BPF_JEQ_K, int(family), "allow", 0)
    program.ret(SECCOMP_RET_ERRNO | errno.EPERM)

    program.label("clone")
    program.load(OFFSET_ARG0_LOW)
    program.jump(BPF_JSET_K, CLONE_NEW_ANY, "kill", "allow")

    program.label("nosys")
    program.ret(SECCOMP_RET_ERRNO | errno.ENOSYS)
    program.label("allow")
    program.ret(SECCOMP_RET_ALLOW)
    program.label("kill")
    program.ret(SECCOMP_RET_KILL_PROCESS)
    return program.assemble()


_programs: dict[tuple[int, ...], tuple[SockFprog, object]] = {}


def program(socket_families: tuple[int, ...]) -> SockFprog | None:
    """The filter as the kernel takes it, built once per family list (the zygote builds it before
    forking, so a run only makes two prctl calls); None without a table for this machine."""
    arch = machine()
    if arch not in SYSCALLS:
        return None
    if socket_families not in _programs:
        instructions = build_filter(arch, socket_families)
        rows = (SockFilter * len(instructions))(*[SockFilter(*row) for row in instructions])
        _programs[socket_families] = (SockFprog(len(instructions), rows), rows)  # rows kept alive with it
    return _programs[socket_families][0]


def install(socket_families: tuple[int, ...] = ()) -> str | None:
    """Set no_new_privs and install the filter on the calling thread.

    Returns None when installed, else why not (an architecture without a table);
    raises OSError when the kernel refuses."""
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {errno.errorcode.get(err, err)}")
    filter_program = program(socket_families)
    if filter_program is None:
        return f"no seccomp table for {machine()}"
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(filter_program), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {errno.errorcode.get(err, err)}")
    return None
