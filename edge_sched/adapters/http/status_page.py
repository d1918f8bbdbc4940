"""The status page: one static HTML/JS file (edge_sched/static/index.html) at `/` and `/ui`.

No build step and no third-party assets: the page connects to the resource-status feed
and reads the decisions (and task plans, when that API is there) from the same origin.
The file is read once when the app is built.
"""

from __future__ import annotations

import html
from importlib import resources

from quart import Blueprint, Response

# Everything the page needs is inline or same-origin.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def status_page_blueprint(api_root: str) -> Blueprint:
    """Args: api_root is written into the page (`data-api-root`), so it follows API_V1_PREFIX."""
    bp = Blueprint("status_page", __name__)
    text = resources.files("edge_sched").joinpath("static/index.html").read_text("utf-8")
    page = text.replace('data-api-root="/api/v1"', f'data-api-root="{html.escape(api_root, quote=True)}"', 1).encode()

    async def index() -> Response:
        return Response(
            page,
            status=200,
            content_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"},
        )

    bp.add_url_rule("/", "index", index, methods=["GET"])
    bp.add_url_rule("/ui", "ui", index, methods=["GET"])
    return bp
