"""kube-scheduler extender wire format (k8s.io/kube-scheduler/extender/v1).

Those Go types carry no JSON tags, so the wire names are the Go field names and
Go's decoder matches them case-insensitively. We accept any case on input and
always answer with the exact Go names. Nodes offered as `Nodes.items` are
echoed back untouched (kube-scheduler rebuilds node info from what we return),
and we never name a node that was not offered.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from operator import add
from typing import Any, Final, overload

import attrs

from edge_sched.core.scoring import MAX_EXTENDER_SCORE


class ExtenderInputError(ValueError):
    """The request body is not a valid extender call; the message names the field."""


def fold_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys lower-cased, as Go's case-insensitive field matching sees them."""
    return {str(k).lower(): v for k, v in obj.items()}


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ExtenderInputError(f"body: expected a JSON object, got {type(body).__name__}")
    return fold_keys(body)


@attrs.frozen
class ExtenderArgs:
    """Filter/prioritize arguments. Exactly one of the node forms is used."""

    pod: Mapping[str, Any]
    node_objects: tuple[Mapping[str, Any], ...] | None  # nodeCacheCapable: false
    node_list: Mapping[str, Any] | None  # the NodeList as received, to echo back
    node_names: tuple[str, ...] | None  # nodeCacheCapable: true

    @property
    def uses_node_objects(self) -> bool:
        return self.node_objects is not None


def parse_extender_args(body: Any) -> ExtenderArgs:
    fields = _require_object(body)
    pod = fields.get("pod")
    if pod is None:
        raise ExtenderInputError("Pod: required")
    if not isinstance(pod, Mapping):
        raise ExtenderInputError(f"Pod: expected an object, got {type(pod).__name__}")
    nodes = fields.get("nodes")
    names = fields.get("nodenames")
    if nodes is not None:
        if not isinstance(nodes, Mapping):
            raise ExtenderInputError("Nodes: expected a NodeList object")
        items = fold_keys(nodes).get("items") or []
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise ExtenderInputError("Nodes.items: expected a list of Node objects")
        return ExtenderArgs(pod, tuple(items), nodes, None)
    if names is None:
        # Neither form given: an empty candidate list, answered as NodeNames.
        return ExtenderArgs(pod, None, None, ())
    if not isinstance(names, list) or not all(map(isinstance, names, repeat(str))):
        raise ExtenderInputError("NodeNames: expected a list of strings")
    return ExtenderArgs(pod, None, None, tuple(names))


def node_object_name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and isinstance(meta.get("name"), str):
        return str(meta["name"])
    return ""


def filter_result(
    args: ExtenderArgs,
    passed: Iterable[str],
    failed: Mapping[str, str],
    unresolvable: Mapping[str, str],
    error: str = "",
    node_names: list[str] | None = None,
) -> dict[str, Any]:
    """ExtenderFilterResult in the same node form the request used. `node_names`: the
    `NodeNames` answer when the caller already has it (the names sent that passed, in order)."""
    result: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": dict(failed),
        "FailedAndUnresolvableNodes": dict(unresolvable),
        "Error": error,
    }
    if args.node_objects is not None:
        keep = set(passed)
        items = [obj for obj in args.node_objects if node_object_name(obj) in keep]
        node_list = dict(args.node_list or {})
        node_list["items"] = items
        result["Nodes"] = node_list
    else:
        if node_names is None:
            keep = set(passed)
            node_names = [n for n in (args.node_names or ()) if n in keep]
        result["NodeNames"] = node_names
    return result


@attrs.frozen(eq=False)
class HostPriorityList(Sequence[dict[str, Any]]):
    """A prioritize answer, `[{"Host": …, "Score": …}]`, kept as two columns.

    Reads as the list of dicts it encodes to (and equals that list), but is encoded
    without building one dict per node: at 1,000 nodes json.dumps of the dicts took 0.4 ms,
    a third of a prioritize call. Each host's `{"Host":"…","Score":` is kept once encoded.
    """

    hosts: tuple[str, ...]
    scores: tuple[int, ...]

    @classmethod
    def of(cls, scores: Mapping[str, int]) -> HostPriorityList:
        return cls(tuple(scores), tuple(map(int, scores.values())))

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return self.to_json()[index]
        return {"Host": self.hosts[index], "Score": self.scores[index]}

    def __len__(self) -> int:
        return len(self.hosts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HostPriorityList):
            return self.hosts == other.hosts and self.scores == other.scores
        return isinstance(other, list) and self.to_json() == other

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> list[dict[str, Any]]:
        return [{"Host": host, "Score": score} for host, score in zip(self.hosts, self.scores)]

    @functools.cached_property
    def encoded(self) -> bytes:
        """The JSON bytes `json.dumps(self.to_json(), separators=(",", ":"))` would give
        (kept: an answer handed out again, by an unchanged ScoreTable, is not re-encoded)."""
        tails = list(map(_SCORE_TAILS.get, self.scores))
        if None in tails:  # a score outside 0..10 (never from edge-sched): the general encoder
            return json.dumps(self.to_json(), separators=(",", ":"), allow_nan=False).encode()
        heads = list(map(_HOST_HEADS.get, self.hosts))
        if None in heads:
            if len(_HOST_HEADS) > _HOST_HEADS_KEPT:
                _HOST_HEADS.clear()
            for host in self.hosts:
                _HOST_HEADS[host] = '{"Host":' + encode_basestring_ascii(host) + ',"Score":'
            heads = list(map(_HOST_HEADS.__getitem__, self.hosts))
        return ("[" + ",".join(map(add, heads, tails)) + "]").encode()


# `N}` for each score an extender gives, 0..10.
_SCORE_TAILS: Final = {score: f"{score}}}" for score in range(MAX_EXTENDER_SCORE + 1)}
# host -> its encoded `{"Host":"…","Score":`, for the hosts of the last calls (cleared past this many).
_HOST_HEADS: dict[str, str] = {}
_HOST_HEADS_KEPT: Final = 20_000


@attrs.frozen
class BindingArgs:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


def parse_binding_args(body: Any) -> BindingArgs:
    fields = _require_object(body)
    values: dict[str, str] = {}
    for go_name in ("PodName", "PodNamespace", "PodUID", "Node"):
        value = fields.get(go_name.lower())
        if value is None or value == "":
            if go_name == "PodNamespace":
                value = "default"
            else:
                raise ExtenderInputError(f"{go_name}: required")
        if not isinstance(value, str):
            raise ExtenderInputError(f"{go_name}: expected a string")
        values[go_name] = value
    return BindingArgs(values["PodName"], values["PodNamespace"], values["PodUID"], values["Node"])


def binding_result(error: str = "") -> dict[str, str]:
    return {"Error": error}


@attrs.frozen
class PreemptionArgs:
    pod: Mapping[str, Any]
    # node -> (victim pod UIDs, PDB violations)
    victims: Mapping[str, tuple[tuple[str, ...], int]]


def _victims(raw: Any, node: str, *, meta: bool) -> tuple[tuple[str, ...], int]:
    field = "NodeNameToMetaVictims" if meta else "NodeNameToVictims"
    if raw is None:
        return (), 0
    if not isinstance(raw, Mapping):
        raise ExtenderInputError(f"{field}.{node}: expected an object")
    victims = fold_keys(raw)
    uids: list[str] = []
    pods = victims.get("pods") or []
    if not isinstance(pods, list):
        raise ExtenderInputError(f"{field}.{node}.Pods: expected a list")
    for i, pod in enumerate(pods):
        if not isinstance(pod, Mapping):
            raise ExtenderInputError(f"{field}.{node}.Pods[{i}]: expected an object")
        if meta:
            uid = fold_keys(pod).get("uid")
        else:
            md = pod.get("metadata")
            uid = md.get("uid") if isinstance(md, Mapping) else None
        if not isinstance(uid, str) or not uid:
            raise ExtenderInputError(f"{field}.{node}.Pods[{i}]: UID required")
        uids.append(uid)
    violations = victims.get("numpdbviolations") or 0
    if not isinstance(violations, int):
        raise ExtenderInputError(f"{field}.{node}.NumPDBViolations: expected an integer")
    return tuple(uids), violations


def parse_preemption_args(body: Any) -> PreemptionArgs:
    fields = _require_object(body)
    pod = fields.get("pod")
    if not isinstance(pod, Mapping):
        raise ExtenderInputError("Pod: required")
    victims: dict[str, tuple[tuple[str, ...], int]] = {}
    for key, meta in (("nodenametometavictims", True), ("nodenametovictims", False)):
        table = fields.get(key)
        if table is None:
            continue
        if not isinstance(table, Mapping):
            raise ExtenderInputError(f"{key}: expected an object")
        for node, raw in table.items():
            victims.setdefault(str(node), _victims(raw, str(node), meta=meta))
    return PreemptionArgs(pod, victims)


def preemption_result(victims: Mapping[str, tuple[tuple[str, ...], int]]) -> dict[str, Any]:
    return {
        "NodeNameToMetaVictims": {
            node: {"Pods": [{"UID": uid} for uid in uids], "NumPDBViolations": violations}
            for node, (uids, violations) in victims.items()
        }
    }
