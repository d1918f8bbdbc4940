"""The computing-power read API (spec S6.5), under the API root.

GET  /computing-power/nodes          every fresh (node, type) entry
GET  /computing-power/nodes/<name>   one node's fresh entries (404 when it has none)
POST /computing-power/quantify       {"containers": [container specs]} -> demand and source

Only fresh entries are shown, the same ones decisions use, so what an operator reads here
is exactly what rule 5 and the score see.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from edge_sched.adapters.http.bodies import BadRequest, json_response, read_json
from edge_sched.codecs.power_report import ROUTER_FIELDS, decode_router_request, encode_router_request
from edge_sched.core.podresources import PodSpecError, pod_requests
from edge_sched.core.power import ComputeType
from edge_sched.runtime.power import PowerService, container_profiles
from edge_sched.runtime.power_store import FreshEntry


def entry_json(fresh: FreshEntry) -> dict[str, Any]:
    host = fresh.entry.host
    load = host.average_load_pct
    units: list[dict[str, Any]] = []
    for u in host.units:
        unit: dict[str, Any] = {"power": round(u.power, 4), "load_pct": u.load_pct}
        if host.type is ComputeType.GPU:
            unit["memory_gib"] = u.memory_gib
        units.append(unit)
    return {
        "node": host.name,
        "type": host.type.label,
        "power_unit": host.type.unit,
        "unit_count": len(host.units),
        "units": units,
        "total_memory_gib": host.total_memory_gib,
        "available_memory_gib": host.available_memory_gib,
        "average_load_pct": None if load is None else round(load, 2),
        "total_power": round(host.total_power, 4),
        "available_power": round(host.available_power, 4),
        "report_id": fresh.entry.report_id,
        "reported_at": fresh.entry.received_wall,
        "age_s": round(fresh.age_s, 3),
    }


def power_blueprint(power: PowerService) -> Blueprint:
    bp = Blueprint("computing_power", __name__)
    expiry_s = power.settings.computing_power.expiry_s

    @bp.get("/computing-power/nodes")
    async def nodes() -> Response:
        entries = [entry_json(f) for f in power.store.fresh()]
        return json_response(
            {"entries": entries, "nodes": len({e["node"] for e in entries}), "expiry_s": expiry_s}
        )

    @bp.get("/computing-power/nodes/<name>")
    async def node(name: str) -> Response:
        entries = [entry_json(f) for f in power.store.fresh(name)]
        if not entries:
            return json_response({"error": f"no fresh computing-power report for node {name!r}"}, 404)
        return json_response({"node": name, "entries": entries, "expiry_s": expiry_s})

    @bp.post("/computing-power/quantify")
    async def quantify() -> Response:
        try:
            body = await read_json()
            containers = _containers(body)
            profiles = container_profiles(containers)
            requests = pod_requests({"spec": {"containers": containers}})
        except BadRequest as exc:
            return json_response({"error": str(exc)}, 400)
        except PodSpecError as exc:
            return json_response({"error": f"containers: {exc}"}, 400)
        demand = await power.demand_for(profiles, requests)
        # What goes on the wire: each field clamped to one byte, as the router client sends it.
        datagram, clamped = encode_router_request(profiles)
        return json_response(
            {
                "demand": demand.to_json(),
                "source": demand.source,
                "detail": demand.detail,
                "router_request": [
                    dict(zip(ROUTER_FIELDS, p.fields(), strict=True)) for p in decode_router_request(datagram)
                ],
                "router_request_clamped": list(clamped),
            }
        )

    return bp


def _containers(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object with \"containers\"")
    containers = body.get("containers")
    if not isinstance(containers, list) or not containers:
        raise BadRequest("containers: expected a non-empty list of Kubernetes container specs")
    if len(containers) > 255:
        raise BadRequest(f"containers: {len(containers)} given, at most 255")
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            raise BadRequest(f"containers[{i}]: expected an object")
    return containers
