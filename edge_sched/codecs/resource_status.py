"""The resource-status WebSocket wire format (spec S8), sans I/O.

Inbound: `decode_message(text)` turns one text frame into a `Query` or a `StatusReport`,
or raises `MessageError` naming every bad field and why, with the `request_id` when the
message had a usable one (so the error reply still carries it). Nothing a client sends
makes this module raise anything else: malformed JSON, NaN/Infinity, duplicate keys,
absurd nesting and wrong types all become a `MessageError`.

Outbound: the frame builders (`query_result`, `update_ack`, `error_frame`,
`status_update`) return the JSON text to send. JSON never carries NaN or Infinity:
frames are encoded with `allow_nan=False`, and a non-finite number that slipped into a
node record is written as `null` rather than producing invalid JSON or a crash.

`node_record` shapes one node's status (cluster facts + live usage + computing power +
last reported status) from plain values; the runtime gathers them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from edge_sched.errors import DecodeError

# S8: a message over 64 KiB closes the connection with 1009.
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_REQUEST_ID_CHARS: Final = 256
MAX_NODE_NAME_CHARS: Final = 253  # a DNS subdomain, as Kubernetes node names are
QUERY_ALL: Final = "all"

STATUS_WORDS: Final = ("available", "in_use", "busy", "offline", "error")
RESOURCES: Final = ("cpu", "gpu", "memory", "disk", "network")
STATUS_FIELDS: Final = tuple(f"{r}_status" for r in RESOURCES)
USAGE_FIELDS: Final = (*(f"{r}_usage" for r in RESOURCES), "overall_load")
UPDATE_FIELDS: Final = ("request_id", "node_id", "status_id", *STATUS_FIELDS, *USAGE_FIELDS)
QUERY_FIELDS: Final = ("request_id", "query")
# An optional "type" may name the kind explicitly; it must then agree with the fields.
TYPE_FIELD: Final = "type"

RequestId = str | int


class MessageError(DecodeError):
    """An inbound message that cannot be used; `str(exc)` says which field and why.

    `reason` is one of: `invalid_json`, `invalid_message`, `unknown_node` (a metrics label).
    """

    def __init__(self, reason: str, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(reason, message)
        self.request_id = request_id


@attrs.frozen
class Query:
    """`{"request_id", "query": "all" | "<node>"}`; `node` is None for all nodes."""

    request_id: RequestId
    node: str | None


@attrs.frozen
class StatusReport:
    """A validated status update: statuses are words of STATUS_WORDS, usages 0..100."""

    request_id: RequestId
    node_id: str
    status_id: RequestId
    statuses: Mapping[str, str]  # resource -> word, for every resource of RESOURCES
    usages: Mapping[str, float]  # resource -> percent, for every resource of RESOURCES
    overall_load: float

    def usage_ratio(self, resource: str) -> float:
        """The reported usage of `resource` as a 0..1 ratio (live-usage fallback)."""
        return self.usages[resource] / 100.0


Message = Query | StatusReport


# -- inbound ------------------------------------------------------------------------------


class _NonFinite:
    """What `NaN`, `Infinity` and `-Infinity` decode to, so the field check can name them."""

    def __init__(self, text: str) -> None:
        self.text = text


class _DuplicateKeys(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeys(key)
        out[key] = value
    return out


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_NonFinite, object_pairs_hook=_object_without_duplicates)
    except _DuplicateKeys as exc:
        raise MessageError("invalid_json", f"duplicate field {exc.args[0]!r}; each field may appear once") from None
    except json.JSONDecodeError as exc:
        raise MessageError(
            "invalid_json", f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); send one JSON object"
        ) from None
    except RecursionError:
        raise MessageError("invalid_json", "JSON nested too deeply; send one flat JSON object") from None
    except ValueError:  # after the subclasses above: an integer over Python's 4,300-digit limit
        raise MessageError("invalid_json", "not JSON (a number has more than 4300 digits); send one JSON object") from None


def _describe(value: Any) -> str:
    if isinstance(value, _NonFinite):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _request_id(body: Mapping[str, Any], problems: list[str]) -> RequestId | None:
    if "request_id" not in body:
        problems.append("request_id: missing, every message needs a request_id (string or integer)")
        return None
    value = body["request_id"]
    if isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID_CHARS:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    problems.append(
        f"request_id: {_describe(value)} is not a non-empty string of at most {MAX_REQUEST_ID_CHARS} "
        "characters or an integer"
    )
    return None


def _node_name(field: str, value: Any, problems: list[str]) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= MAX_NODE_NAME_CHARS:
        return value
    problems.append(f"{field}: {_describe(value)} is not a node name (non-empty string, at most 253 characters)")
    return None


def _percent(field: str, value: Any, problems: list[str]) -> float | None:
    if isinstance(value, _NonFinite):
        problems.append(f"{field}: {value.text} is not allowed, expected a number 0-100")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{field}: {_describe(value)} is not a number, expected a percentage 0-100")
        return None
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 parses as inf
        problems.append(f"{field}: {_describe(value)} is not a finite number, expected 0-100")
        return None
    # Compared before float(): a 400-digit integer is out of range, not an OverflowError.
    if not 0 <= value <= 100:
        problems.append(f"{field}: {_describe(value)} is out of range, expected a percentage 0-100")
        return None
    return float(value)


def _status_word(field: str, value: Any, problems: list[str]) -> str | None:
    if isinstance(value, str) and value in STATUS_WORDS:
        return value
    problems.append(f"{field}: {_describe(value)} is not a status, expected one of {', '.join(STATUS_WORDS)}")
    return None


def decode_message(frame: str | bytes) -> Message:
    """Decode one WebSocket message.

    Args:
        frame: the message as received (text frames are `str`; binary frames are refused).

    Returns:
        A `Query` or a `StatusReport`.

    Raises:
        MessageError: the message is unusable; the text names each bad field and why, and
            `request_id` is set whenever the message had a valid one.
    """
    if isinstance(frame, bytes):
        raise MessageError("invalid_message", "binary frame; send JSON as a text frame")
    body = _parse_json(frame)
    if not isinstance(body, dict):
        raise MessageError("invalid_message", f"expected a JSON object, got {_describe(body)}")
    problems: list[str] = []
    request_id = _request_id(body, problems)
    is_query, is_update = "query" in body, "node_id" in body
    declared = body.get(TYPE_FIELD)
    if is_query and is_update:
        problems.append('message has both "query" and "node_id", send a query or an update, not both')
    elif not (is_query or is_update):
        problems.append('message needs "query" (a query) or "node_id" (a status update)')
    else:
        kind, a_kind = ("query", "a query") if is_query else ("update", "an update")
        if TYPE_FIELD in body and declared != kind:
            problems.append(f'type: {_describe(declared)} does not match the fields of {a_kind} (expected "{kind}")')
        known = set(QUERY_FIELDS if is_query else UPDATE_FIELDS) | {TYPE_FIELD}
        unknown = sorted(k for k in body if k not in known)
        if unknown:
            problems.append(f"unknown field(s) {', '.join(unknown)} ({a_kind} has {', '.join(sorted(known))})")
        if is_query:
            return _query(body, request_id, problems)
        return _update(body, request_id, problems)
    raise MessageError("invalid_message", "; ".join(problems), request_id)


def _query(body: Mapping[str, Any], request_id: RequestId | None, problems: list[str]) -> Query:
    node = _node_name("query", body["query"], problems)
    if problems or request_id is None or node is None:
        raise MessageError("invalid_message", "; ".join(problems), request_id)
    return Query(request_id, None if node == QUERY_ALL else node)


def _update(body: Mapping[str, Any], request_id: RequestId | None, problems: list[str]) -> StatusReport:
    node = _node_name("node_id", body["node_id"], problems)
    status_id: RequestId | None = None
    if "status_id" not in body:
        problems.append("status_id: missing, expected a string or integer identifying this report")
    else:
        value = body["status_id"]
        if (isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID_CHARS) or (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            status_id = value
        else:
            problems.append(f"status_id: {_describe(value)} is not a non-empty string or an integer")
    statuses: dict[str, str] = {}
    usages: dict[str, float] = {}
    for resource in RESOURCES:
        for field, check, into in (
            (f"{resource}_status", _status_word, statuses),
            (f"{resource}_usage", _percent, usages),
        ):
            if field not in body:
                problems.append(f"{field}: missing")
                continue
            value = check(field, body[field], problems)
            if value is not None:
                into[resource] = value  # type: ignore[assignment]
    overall = None
    if "overall_load" not in body:
        problems.append("overall_load: missing")
    else:
        overall = _percent("overall_load", body["overall_load"], problems)
    if problems or request_id is None or node is None or status_id is None or overall is None:
        raise MessageError("invalid_message", "; ".join(problems), request_id)
    return StatusReport(request_id, node, status_id, statuses, usages, overall)


# -- outbound -----------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (the slow path of `encode`)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode(payload: Mapping[str, Any]) -> str:
    """Compact JSON; a NaN or Infinity anywhere becomes null, never invalid JSON."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False)


def node_members(records: Mapping[str, Mapping[str, Any]]) -> str:
    """`"name": {record}` members of a frame's `nodes` object, for a few dozen nodes in one
    encoder call, so that a large frame can be built piece by piece (see `nodes_object`)."""
    return encode(records)[1:-1]


def nodes_object(pieces: Sequence[str]) -> str:
    """The `nodes` object from `node_members` pieces."""
    return "{" + ",".join(p for p in pieces if p) + "}"


def _with_nodes(head: Mapping[str, Any], nodes_json: str) -> str:
    text = encode(head)
    return text[:-1] + ',"nodes":' + nodes_json + "}"


def query_result_from(request_id: RequestId, nodes_json: str, timestamp: float) -> str:
    """A query_result around an encoded `nodes` object (from `nodes_object`)."""
    return _with_nodes({"request_id": request_id, "type": "query_result", "timestamp": timestamp}, nodes_json)


def status_update_from(timestamp: float, nodes_json: str) -> str:
    """A status_update around an encoded `nodes` object (from `nodes_object`)."""
    return _with_nodes({"type": "status_update", "timestamp": timestamp}, nodes_json)


def query_result(request_id: RequestId, nodes: Mapping[str, Any], timestamp: float) -> str:
    return query_result_from(request_id, nodes_object([node_members(nodes)]), timestamp)


def update_ack(report: StatusReport) -> str:
    return encode(
        {
            "request_id": report.request_id,
            "type": "update_ack",
            "success": True,
            "node_id": report.node_id,
            "status_id": report.status_id,
        }
    )


def error_frame(request_id: RequestId | None, error: str) -> str:
    return encode({"request_id": request_id, "type": "error", "error": error})


def status_update(timestamp: float, nodes: Mapping[str, Any]) -> str:
    return status_update_from(timestamp, nodes_object([node_members(nodes)]))


# -- node records -------------------------------------------------------------------------


def _round(value: float | None, digits: int = 2) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


@attrs.frozen
class ClusterFacts:
    """What the watch cache says about a node (cpu in millicores, the rest in base units)."""

    ready: bool
    unschedulable: bool
    allocatable: Mapping[str, int]
    requested: Mapping[str, int]
    pod_count: int
    addresses: Sequence[str] = ()
    zone: str | None = None


@attrs.frozen
class LiveUsage:
    """The live usage decisions use for the node: 0..1 ratios, where from, why missing."""

    source: str
    cpu: float | None
    memory: float | None
    note: str = ""


@attrs.frozen
class PowerFacts:
    """One fresh computing-power entry (S6) of a node."""

    type: str  # cpu, gpu, fpga
    unit: str  # GHz, TFLOPS
    units: int
    total: float
    available: float
    average_load_pct: float | None
    total_memory_gib: float
    available_memory_gib: float
    report_id: int
    age_s: float


@attrs.frozen
class ReportedFacts:
    """The last status report (S8 update) for the node."""

    report: StatusReport
    reported_at: float  # unix seconds
    age_s: float


def node_record(
    name: str,
    *,
    cluster: ClusterFacts | None,
    usage: LiveUsage | None,
    power: Sequence[PowerFacts],
    reported: ReportedFacts | None,
) -> dict[str, Any]:
    """One node's status as sent in `query_result` and `status_update` frames.

    Sections are null when their source knows nothing of the node. Percentages are
    0..100 with two decimals; `usage.source` names the live-usage source in force.
    """
    record: dict[str, Any] = {"name": name, "sources": []}
    if cluster is not None:
        record["sources"].append("cluster")
        record["cluster"] = {
            "ready": cluster.ready,
            "unschedulable": cluster.unschedulable,
            "allocatable": dict(cluster.allocatable),
            "requested": dict(cluster.requested),
            "pod_count": cluster.pod_count,
            "addresses": list(cluster.addresses),
            "zone": cluster.zone,
        }
    else:
        record["cluster"] = None
    if usage is not None:
        record["usage"] = {
            "source": usage.source,
            "cpu_pct": _round(None if usage.cpu is None else usage.cpu * 100),
            "memory_pct": _round(None if usage.memory is None else usage.memory * 100),
            "note": usage.note,
        }
    else:
        record["usage"] = None
    if power:
        record["sources"].append("computing_power")
        record["computing_power"] = {
            p.type: {
                "unit": p.unit,
                "units": p.units,
                "total": _round(p.total, 4),
                "available": _round(p.available, 4),
                "average_load_pct": _round(p.average_load_pct),
                "total_memory_gib": _round(p.total_memory_gib),
                "available_memory_gib": _round(p.available_memory_gib),
                "report_id": p.report_id,
                "age_s": _round(p.age_s, 1),
            }
            for p in power
        }
    else:
        record["computing_power"] = None
    if reported is not None:
        record["sources"].append("reported")
        r = reported.report
        record["reported"] = {
            "status_id": r.status_id,
            **{f"{res}_status": r.statuses[res] for res in RESOURCES},
            **{f"{res}_usage": _round(r.usages[res]) for res in RESOURCES},
            "overall_load": _round(r.overall_load),
            "reported_at": _round(reported.reported_at, 3),
            "age_s": _round(reported.age_s, 1),
        }
    else:
        record["reported"] = None
    return record
