"""IO on workspace files that no symlink can lead out: every open starts at an opened root
directory and goes one component at a time with O_NOFOLLOW (openat), and the bytes read are
those of the file that was opened and checked (fstat on the same descriptor), never a second
open by name. A link or a FIFO swapped in at any moment makes the call fail, not lead out."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codegen_site.core.errors import BadInput, PathNotAllowed, PathNotFound, PathOutsideWorkspace, ServiceError
from codegen_site.core.workspace.paths import check_writable, inside, parts, relative, root
from codegen_site.core.workspace.policy import is_hidden_name, looks_secret

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK_BYTES = 1 << 20

# openat2(2) (Linux 5.6+): one call opens a path below a directory fd, refusing every symbolic
# link and any way out of the directory on the kernel's side; what the walk below does one
# component at a time. Its number in the generic syscall table (x86-64 and arm64 alike).
_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2():
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_OpenHow), ctypes.c_size_t]
    return syscall


_syscall = _load_openat2()
_openat2_works = _syscall is not None


def _openat2(dir_fd: int, relative_path: str, flags: int) -> int | None:
    """An fd for `relative_path` below `dir_fd` with no symbolic link on the way, or None where
    the kernel (or a seccomp filter) has no openat2: the caller walks instead. OSError otherwise."""
    global _openat2_works
    if not _openat2_works:
        return None
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = _syscall(_OPENAT2, dir_fd, os.fsencode(relative_path), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        return fd
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EPERM, errno.E2BIG):
        _openat2_works = False
        return None
    raise OSError(error, os.strerror(error))


class _RootHandle:
    """The workspace root, opened once and kept (checked against the path by one stat per use,
    so a root moved or replaced is opened again, and the old fd closed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] | None = None
        self._fd: int | None = None

    def open_below(self, relative_path: str, flags: int) -> int | None:
        """_openat2 of a path below the root. The lock is held for the call, so the fd it uses is
        never closed (and its number reused) under it."""
        if not _openat2_works:
            return None
        path = root()
        try:
            info = os.stat(path)
        except OSError:
            return None  # the walk answers for a root that is not there
        key = (str(path), info.st_dev, info.st_ino)
        with self._lock:
            if key != self._key:
                fd = os.open(path, _DIR_FLAGS)
                opened = os.fstat(fd)
                if (opened.st_dev, opened.st_ino) != key[1:]:
                    os.close(fd)
                    raise ServiceError(f"The workspace root changed while being opened: {path}")
                if self._fd is not None:
                    os.close(self._fd)
                self._key, self._fd = key, fd
            return _openat2(self._fd, relative_path, flags)


_root_handle = _RootHandle()


def _walk_error(exc: OSError, dir_fd: int, name: str, shown: str, *, creating: bool = False) -> ServiceError:
    """The ServiceError for a failed openat of `name` while walking to `shown`.

    A file where a directory should be is "not found" when reading and bad input when creating."""
    if exc.errno == errno.ENOENT:
        return PathNotFound(f"Path not found: {shown}")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link or exc.errno == errno.ELOOP:
            return PathOutsideWorkspace(f"Path changed to a symbolic link while in use: {shown}")
        if not creating:
            return PathNotFound(f"Path not found (a parent is a file): {shown}")
        return BadInput(f"A parent of the path is not a directory: {shown}")
    if exc.errno == errno.ENAMETOOLONG:
        return BadInput(f"Path is too long: {shown}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PathNotAllowed(f"Permission denied: {shown}")
    return ServiceError(f"Could not open {shown}: {exc.strerror}")


@contextmanager
def open_dir(path: Path, *, create: bool = False) -> Iterator[int]:
    """A directory fd for a resolved path, reached from the root without following links.

    With create=True missing directories are made on the way. The fd is closed on exit."""
    shown = relative(path) if inside(path, root()) else str(path)
    fd = os.open(root(), _DIR_FLAGS)
    try:
        for name in parts(path):
            if is_hidden_name(name):
                raise PathNotAllowed(f"Path is off limits (the product's own data): {shown}")
            try:
                next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise PathNotFound(f"Path not found: {shown}") from None
                try:
                    os.mkdir(name, dir_fd=fd)
                except FileExistsError:
                    pass  # made by a concurrent writer
                except OSError as exc:
                    raise _walk_error(exc, fd, name, shown, creating=True) from exc
                try:
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _walk_error(exc, fd, name, shown, creating=True) from exc
            except OSError as exc:
                raise _walk_error(exc, fd, name, shown, creating=create) from exc
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def open_file(dir_fd: int, name: str, flags: int = os.O_RDONLY, mode: int = 0o666, *, shown: str = "") -> int:
    """openat(dir_fd, name) that refuses a symbolic link as the last component.

    Non-blocking open so a FIFO planted in the workspace cannot hang the server;
    callers check the kind with os.fstat."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise _walk_error(exc, dir_fd, name, shown or name) from exc


def open_child_dir(dir_fd: int, name: str, *, shown: str = "") -> int:
    """openat(dir_fd, name) of a directory that refuses a symbolic link."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _walk_error(exc, dir_fd, name, shown or name) from exc


@contextmanager
def open_dir_for_write(path: Path) -> Iterator[int]:
    """open_dir(create=True) for a directory a file is about to be written in; refused where a
    server process would import or run what is written (paths.check_writable)."""
    check_writable(path)
    with open_dir(path, create=True) as fd:
        yield fd


def is_regular_file(path: Path) -> bool:
    """The workspace path names a regular file, reached without following a link at any component."""
    try:
        with open_dir(path.parent) as dir_fd:
            return stat.S_ISREG(os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except (ServiceError, OSError):
        return False


def read_open(fd: int, limit: int, shown: str) -> bytes:
    """All bytes of an opened file: refused when it is not a regular file, is over `limit`
    bytes, or holds a private key."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise BadInput(f"Path is a directory: {shown}")
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"Path is not a regular file: {shown}")
    if info.st_size > limit:
        raise BadInput(f"File is {info.st_size} bytes; the read limit is {limit} bytes")
    data = _read_all(fd, limit, shown, info.st_size)
    if looks_secret(data):
        raise PathNotAllowed(f"Path is off limits (it holds a private key): {shown}")
    return data


def _read_all(fd: int, limit: int, shown: str, size: int) -> bytes:
    # Asks for the size fstat gave and a byte more: a read that comes back short having reached
    # that size is the end of the file, so a file that did not change is one read.
    chunks, total = [], 0
    expected = min(size, limit) + 1
    while True:
        asked = min(CHUNK_BYTES, limit + 1 - total, expected - total if total < expected else CHUNK_BYTES)
        chunk = os.read(fd, asked)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise BadInput(f"File is over the read limit of {limit} bytes")
        if len(chunk) < asked and total >= size:
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_bytes(path: Path, limit: int) -> bytes:
    """A resolved workspace file's bytes (see read_open for what is refused): one open (openat2
    from the kept root fd, where the kernel has it) and one read."""
    shown = relative(path)
    names = parts(path)
    if any(is_hidden_name(name) for name in names):
        raise PathNotAllowed(f"Path is off limits (the product's own data): {shown}")
    fd = None
    if names:
        try:
            fd = _root_handle.open_below("/".join(names), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise PathNotFound(f"Path not found: {shown}") from None
        except OSError:
            fd = None  # a link, a file for a directory, no permission: the walk names what it met
    if fd is None:
        with open_dir(path.parent) as dir_fd:
            fd = open_file(dir_fd, path.name, os.O_RDONLY, shown=shown)
    try:
        return read_open(fd, limit, shown)
    finally:
        os.close(fd)


class Reader:
    """Reads many workspace files by relative path, keeping the last directory open: a walk's
    files come sorted, so most reads are one openat. Use as a context manager."""

    def __init__(self, limit: int):
        self.limit = limit
        self._directory: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info) -> None:
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._directory = None

    def _dir_fd(self, directory: str) -> int:
        if directory != self._directory:
            self._close()
            with open_dir(root().joinpath(*directory.split("/")) if directory else root()) as fd:
                self._fd = os.dup(fd)
            self._directory = directory
        return self._fd

    def read(self, relative_path: str) -> bytes:
        """A file's bytes, or a ServiceError (gone, a link, too large, not regular, a secret)."""
        directory, _, name = relative_path.rpartition("/")
        if is_hidden_name(name):  # the directories' names are checked by open_dir
            raise PathNotAllowed(f"Path is off limits: {relative_path}")
        dir_fd = self._dir_fd(directory)
        fd = open_file(dir_fd, name, os.O_RDONLY, shown=relative_path)
        try:
            return read_open(fd, self.limit, relative_path)
        finally:
            os.close(fd)
