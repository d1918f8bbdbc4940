"""Bearer-token guard for mutating endpoints (API_AUTH_TOKEN).

Once a token is configured, every POST/PUT/PATCH/DELETE other than the
extender verbs needs `Authorization: Bearer <token>`; kube-scheduler's calls
stay open because its extender client cannot send a token (secure them with
TLS client certificates instead: TLS_CLIENT_CA_FILE). Reads stay open so
probes and dashboards keep working.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from quart import Response, request

from edge_sched.adapters.http.bodies import json_response

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXTENDER_VERBS = ("/filter", "/prioritize", "/scheduler/priority", "/bind", "/preempt")


def token_guard(token: str, api_root: str) -> Callable[[], Awaitable[Response | None]]:
    """A `before_request` hook enforcing `token` on mutating, non-extender calls."""
    open_paths = frozenset(api_root + verb for verb in EXTENDER_VERBS)
    expected = f"Bearer {token}".encode()

    async def guard() -> Response | None:
        if request.method not in MUTATING or request.path in open_paths:
            return None
        given = request.headers.get("Authorization", "").encode()
        # Constant-time comparison: the token must not leak through timing.
        if hmac.compare_digest(given, expected):
            return None
        refused = json_response({"error": "missing or wrong bearer token (API_AUTH_TOKEN)"}, 401)
        refused.headers["WWW-Authenticate"] = "Bearer"
        # The body was never read; closing the connection keeps its unread bytes
        # from being parsed as the client's next request on a kept-alive connection.
        refused.headers["Connection"] = "close"
        return refused

    return guard
