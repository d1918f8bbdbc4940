"""Operational endpoints: health (metrics are served on METRICS_PORT)."""

from __future__ import annotations

from quart import Blueprint, Response

from edge_sched import __version__
from edge_sched.adapters.http.bodies import json_response
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.status import DaemonStatus


def ops_blueprint(status: DaemonStatus, cache: ClusterCache) -> Blueprint:
    bp = Blueprint("ops", __name__)

    @bp.get("/scheduler/health")
    async def health() -> Response:
        payload = status.to_json({"cache": f"{len(cache.nodes)} nodes, {len(cache.pods)} pods"})
        payload["version"] = __version__  # edge-sched's own; APP_VERSION labels the deployment
        payload["app"] = status.app_name
        payload["app_version"] = status.app_version
        payload["mode"] = "cluster" if status.kube_source else "standalone"
        return json_response(payload, 200 if status.healthy else 503)

    return bp
