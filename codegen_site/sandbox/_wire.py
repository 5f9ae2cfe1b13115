"""The one wire format between the runner (runner.py) and the zygote (_zygote.py).

Frames of a 4-byte big-endian length and JSON on a unix socket; a run request carries the
write end of the run's output pipe as SCM_RIGHTS. Standalone: the zygote imports it by path
(it must not import the Django project), the runner as part of the package.
"""

from __future__ import annotations

import array
import json
import socket
import struct

HEADER = struct.Struct(">I")


def send_message(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    """One frame; `fds` travel with its first bytes."""
    data = json.dumps(message).encode()
    frame = HEADER.pack(len(data)) + data
    if fds:
        sent = sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        frame = frame[sent:]
    if frame:
        sock.sendall(frame)


def receive_exact(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            raise EOFError
        buffer += chunk
    return bytes(buffer)


def receive_message(sock: socket.socket) -> tuple[dict, list[int]]:
    """The next frame and the descriptors sent with it; EOFError when the other side closed."""
    fds = array.array("i")
    head, ancillary, _flags, _address = sock.recvmsg(HEADER.size, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not head:
        raise EOFError
    if len(head) < HEADER.size:
        head += receive_exact(sock, HEADER.size - len(head))
    (size,) = HEADER.unpack(head)
    return json.loads(receive_exact(sock, size)), list(fds)
