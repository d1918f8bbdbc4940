"""systemd readiness notification (sd_notify), for `Type=notify` units.

READY=1 is sent only once the HTTP server is serving and the cache has synced
(or its grace passed), so `systemctl start` returns when the daemon is usable.
Without NOTIFY_SOCKET (not under systemd) this does nothing.
"""

from __future__ import annotations

import os
import socket


def sd_notify(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
