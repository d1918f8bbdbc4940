"""The resource-status feed (spec S8) as Quart routes under the API root.

GET /resource-status/ws       WebSocket: queries, status updates, periodic status_update
GET /resource-status/health   {"status": "healthy", "active_connections": n, ...}

One connection = one handler with two tasks: the reader (this module) decodes each
message and queues the reply; the writer (`runtime.resource_status.pump`) is the only
task that writes to the socket, each write bounded by RESOURCE_STATUS_BROADCAST_TIMEOUT.
When either ends, the connection ends, and the client leaves the set in `finally`
whatever the cause (normal close, reset, drop, cancellation at shutdown).

Limits: the connection past RESOURCE_STATUS_MAX_CONNECTIONS is accepted and closed at
once with 1013 (a close code needs an open WebSocket; refusing the handshake could only
say 403). A message over 64 KiB closes the connection with 1009: Hypercorn enforces it
while the frames arrive (`websocket_max_message_size`, counted in characters for text),
and the reader re-checks the UTF-8 size of text that passed, so the limit is in bytes.
"""

from __future__ import annotations

import hmac
import logging
from functools import partial

import trio
from quart import Blueprint, Response, websocket

from edge_sched.adapters.http.bodies import json_response
from edge_sched.adapters.tcp_abort import abort_tcp_connection
from edge_sched.codecs.resource_status import MAX_MESSAGE_BYTES
from edge_sched.runtime.resource_status import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    Client,
    ClientGone,
    ResourceStatusService,
    pump,
)

log = logging.getLogger(__name__)

WS_PATH = "/resource-status/ws"
HEALTH_PATH = "/resource-status/health"


def _over_limit(message: str | bytes) -> bool:
    if isinstance(message, bytes):
        return len(message) > MAX_MESSAGE_BYTES
    # A character is at most 4 UTF-8 bytes: only encode when the size is in doubt.
    return len(message) > MAX_MESSAGE_BYTES or (
        len(message) * 4 > MAX_MESSAGE_BYTES and len(message.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES
    )


def _peer(address: object) -> str:
    if isinstance(address, (list, tuple)) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "?"


def resource_status_blueprint(service: ResourceStatusService) -> Blueprint:
    bp = Blueprint("resource_status", __name__)
    settings = service.settings
    expected_auth = f"Bearer {service.auth_token}".encode() if service.auth_token else None

    @bp.websocket(WS_PATH)
    async def feed() -> None:
        scope = websocket.scope
        client = service.clients.admit(
            _peer(scope.get("client")), partial(abort_tcp_connection, scope.get("server"), scope.get("client"))
        )
        await websocket.accept()
        if client is None:
            log.info("resource-status: refused %s: %d clients connected", _peer(scope.get("client")), settings.max_connections)
            await websocket.close(
                CLOSE_TRY_AGAIN_LATER, f"too many connections (RESOURCE_STATUS_MAX_CONNECTIONS={settings.max_connections})"
            )
            return
        may_update = expected_auth is None or hmac.compare_digest(
            websocket.headers.get("Authorization", "").encode(), expected_auth
        )
        log.info("resource-status: client %d connected from %s", client.id, client.peer)
        try:
            with client.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_write, client, nursery.cancel_scope)
                    await _read(client, may_update)
        finally:
            service.clients.remove(client)
            log.info("resource-status: client %d (%s) gone%s", client.id, client.peer,
                     f": {client.dropped}" if client.dropped else "")

    async def _write(client: Client, connection: trio.CancelScope) -> None:
        await pump(client, service.clients, websocket.send, websocket.close, settings.broadcast_timeout_s)
        connection.cancel()  # the writer is done (closed, dropped or failed): so is the connection

    async def _read(client: Client, may_update: bool) -> None:
        while True:
            message = await websocket.receive()
            if _over_limit(message):
                service.metrics.messages.labels("in", "invalid").inc()
                service.metrics.errors.labels("oversize").inc()
                client.request_close(CLOSE_MESSAGE_TOO_BIG, f"message over {MAX_MESSAGE_BYTES} bytes")
                await trio.sleep_forever()  # the writer sends the close, then ends the connection
            reply = await service.handle_message(message, may_update=may_update)
            try:
                await client.reply(reply)
            except ClientGone:
                await trio.sleep_forever()

    @bp.get(HEALTH_PATH)
    async def health() -> Response:
        return json_response(service.health())

    return bp
