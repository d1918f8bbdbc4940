"""The Prometheus exposition app served on METRICS_PORT.

prometheus_client's ASGI app does not speak the lifespan protocol; answering
it here keeps Hypercorn from logging a spurious error at every start.
"""

from __future__ import annotations

from typing import Any

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from prometheus_client import CollectorRegistry, make_asgi_app


def metrics_app(registry: CollectorRegistry) -> ASGIFramework:
    exposition: Any = make_asgi_app(registry)

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "lifespan":
            await exposition(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app
