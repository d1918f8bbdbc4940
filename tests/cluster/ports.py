"""Free loopback ports for the processes the harness starts."""

from __future__ import annotations

import socket

# Ports handed out by this process. The OS may return a port again right after it
# was released, before the first taker has bound it; remembering them avoids
# giving one port to two programs of the same cluster.
_given: set[tuple[int, int]] = set()


def free_port(*, udp: bool = False) -> int:
    """A port on 127.0.0.1 that is free now (TCP unless `udp`).

    There is a window between this call and the program binding the port; within
    one harness process the same port is never returned twice.
    """
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if (kind, port) not in _given:
            _given.add((kind, port))
            return port
    raise RuntimeError("no free loopback port found in 100 tries")
