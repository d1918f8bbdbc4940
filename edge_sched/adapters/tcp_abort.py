"""Reset one accepted TCP connection, found by its addresses, from outside the server.

Why this exists: a WebSocket client that stops reading closes its TCP window, and the
server's write to it blocks. Hypercorn performs socket writes inside a cancel scope with
`shield=True` (so a cancelled write never leaves half a frame on the wire), which means
no deadline of ours can interrupt that write, and a close frame cannot get past the
unread data either. The only way to free the writer, its buffers and the connection is
to end the connection itself. The ASGI scope gives us the connection's two addresses
(`scope["server"]`, `scope["client"]`); this module finds the socket with exactly those
addresses among the process's open file descriptors and resets it:
`SO_LINGER {on, 0}` (the unsent data is discarded and the peer gets an RST when the
server closes it) and `shutdown(SHUT_RDWR)`, which wakes the blocked writer at once
with EPIPE (Hypercorn handles that as a closed connection) and the reader with EOF.

The descriptor is duplicated before it is inspected, so a connection closing concurrently
can never make us touch an unrelated socket that reused its number. Linux lists
descriptors in /proc/self/fd; other Unix systems in /dev/fd.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Sequence

_FD_DIRS = ("/proc/self/fd", "/dev/fd")
_LINGER_RESET = struct.pack("ii", 1, 0)


def _address(value: Sequence[object] | None) -> tuple[object, ...] | None:
    return None if value is None else tuple(value[:2])


def _open_fds() -> list[int]:
    for directory in _FD_DIRS:
        try:
            return sorted(int(name) for name in os.listdir(directory) if name.isdigit())
        except OSError:
            continue
    return []


def abort_tcp_connection(local: Sequence[object] | None, peer: Sequence[object] | None) -> bool:
    """Reset the TCP connection between `local` and `peer` ((host, port) pairs).

    Returns:
        True when the connection was found and reset, False when no open socket has
        those addresses (it is already gone) or the addresses are unknown.
    """
    want_local, want_peer = _address(local), _address(peer)
    if want_local is None or want_peer is None:
        return False
    for fd in _open_fds():
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            dup = os.dup(fd)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                if tuple(sock.getpeername()[:2]) != want_peer or tuple(sock.getsockname()[:2]) != want_local:
                    continue
            except OSError:  # not connected (a listener) or already shut down
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the peer reset it first: gone either way
            return True
        finally:
            sock.close()  # closes our duplicate only; the server closes its own
    return False
