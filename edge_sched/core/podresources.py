"""A pod's effective resource request, computed the way kube-scheduler does.

Filter rule 1 (spec S5) compares this request with a node's free resources, so
it must match kube-scheduler's own arithmetic, or the extender passes nodes the
scheduler then rejects (or the reverse). This module mirrors
``k8s.io/component-helpers/resource.PodRequests`` (v0.36):

* per container and resource, ``requests[r]``, else ``limits[r]`` (API-server
  defaulting: a resource set only in limits requests its limit);
* the app containers are summed;
* init containers run one at a time, each next to the restartable ("sidecar",
  ``restartPolicy: Always``) init containers started before it; sidecars keep
  running, so they also join the steady-state sum;
* per resource, the larger of the steady-state sum and the largest init-time
  need, then pod-level ``spec.resources`` (cpu, memory, hugepages-*) replace
  the container aggregate, and ``spec.overhead`` is added once.

Quantities are summed exactly, each first rounded up to whole nano units as
apimachinery's parser does, and converted to canonical integers (millicores,
bytes; see ``quantities.canonical_amount``) once, on the totals. Resize status
(in-place vertical scaling) is not considered: the pods we judge are pending.

Pods come as decoded JSON, often with explicit nulls. Nulls count as absent,
except a null quantity, which Go decodes as a set zero. Every other malformed
field becomes one line in ``PodSpecError.problems`` naming its path; all are
collected before raising, and no TypeError or AttributeError escapes.
``parse_resource_list`` (node ``status.allocatable``) raises the same
``PodSpecError``: the fault is the same kind, a bad field in a Kubernetes
object, and callers handle pods and nodes alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, Final

from edge_sched.core.quantities import (
    canonical_amount,
    parse_resource_quantity,
    to_nano,
)

__all__ = ["PodSpecError", "parse_resource_list", "pod_requests"]

_Totals = dict[str, Fraction]

_SIDECAR_RESTART_POLICY: Final = "Always"
_POD_LEVEL_RESOURCES: Final = frozenset({"cpu", "memory"})
_HUGEPAGES_PREFIX: Final = "hugepages-"


class PodSpecError(ValueError):
    """A pod or resource list has malformed fields.

    Attributes:
        problems: one line per bad field, ``"<field path>: <why>"``.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def pod_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """The pod's effective request per resource, as kube-scheduler computes it.

    Args:
        pod: a v1.Pod as decoded JSON.

    Returns:
        Canonical amounts by resource name: ``cpu`` in millicores, everything
        else in base units (bytes, devices…). Resources that total 0 are left out.

    Raises:
        PodSpecError: with every malformed field, including quantities that do
            not parse, are negative, or are fractions of an extended resource.
    """
    if not isinstance(pod, Mapping):
        raise PodSpecError([f"pod: expected an object, got {_kind(pod)}"])
    problems: list[str] = []
    spec = _as_mapping(pod.get("spec"), "spec", problems)
    totals = _container_totals(spec, problems)
    _apply_pod_level_requests(spec, totals, problems)
    _add(totals, _resource_list(spec.get("overhead"), "spec.overhead", problems))
    if problems:
        raise PodSpecError(problems)
    amounts = {name: canonical_amount(name, value) for name, value in totals.items()}
    return {name: amount for name, amount in amounts.items() if amount != 0}


def parse_resource_list(mapping: object, path: str) -> dict[str, int]:
    """A ResourceList (e.g. node ``status.allocatable``) as canonical amounts.

    Args:
        mapping: resource name → quantity; None is an empty list.
        path: the field's path, used to name bad entries.

    Returns:
        Canonical amounts by resource name, zeros kept: a node advertising
        ``nvidia.com/gpu: 0`` says so.

    Raises:
        PodSpecError: with every malformed entry.
    """
    problems: list[str] = []
    values = _resource_list(mapping, path, problems)
    if problems:
        raise PodSpecError(problems)
    return {name: canonical_amount(name, value) for name, value in values.items()}


def _container_totals(spec: Mapping[str, Any], problems: list[str]) -> _Totals:
    totals: _Totals = {}
    containers = _as_list(spec.get("containers"), "spec.containers", problems)
    for index, container in enumerate(containers):
        _add(totals, _container_requests(container, f"spec.containers[{index}]", problems))

    sidecars: _Totals = {}
    init_peak: _Totals = {}
    init_containers = _as_list(spec.get("initContainers"), "spec.initContainers", problems)
    for index, container in enumerate(init_containers):
        requests = _container_requests(container, f"spec.initContainers[{index}]", problems)
        if _is_sidecar(container):
            # A sidecar keeps running after start-up, alongside the app.
            _add(totals, requests)
            _add(sidecars, requests)
            init_time = dict(sidecars)
        else:
            # It runs to completion next to the sidecars started before it.
            init_time = dict(sidecars)
            _add(init_time, requests)
        _raise_to(init_peak, init_time)
    _raise_to(totals, init_peak)
    return totals


def _container_requests(container: object, path: str, problems: list[str]) -> _Totals:
    fields = _as_mapping(container, path, problems)
    resources = _as_mapping(fields.get("resources"), f"{path}.resources", problems)
    requests = _resource_list(resources.get("requests"), f"{path}.resources.requests", problems)
    limits = _resource_list(resources.get("limits"), f"{path}.resources.limits", problems)
    # API-server defaulting: a resource set only in limits requests its limit.
    return {**limits, **requests}


def _is_sidecar(container: object) -> bool:
    return (
        isinstance(container, Mapping) and container.get("restartPolicy") == _SIDECAR_RESTART_POLICY
    )


def _is_pod_level_resource(name: str) -> bool:
    return name in _POD_LEVEL_RESOURCES or name.startswith(_HUGEPAGES_PREFIX)


def _apply_pod_level_requests(
    spec: Mapping[str, Any], totals: _Totals, problems: list[str]
) -> None:
    resources = _as_mapping(spec.get("resources"), "spec.resources", problems)
    requests = _resource_list(resources.get("requests"), "spec.resources.requests", problems)
    limits = _resource_list(resources.get("limits"), "spec.resources.limits", problems)
    for name, limit in limits.items():
        # API-server defaulting of a pod-level request from a pod-level limit:
        # cpu and memory keep the containers' aggregate when they request any;
        # hugepages cannot be overcommitted, so their request is the limit.
        inherits_containers = name in totals and not name.startswith(_HUGEPAGES_PREFIX)
        if _is_pod_level_resource(name) and name not in requests and not inherits_containers:
            totals[name] = limit
    for name, request in requests.items():
        if _is_pod_level_resource(name):
            totals[name] = request


def _resource_list(value: object, path: str, problems: list[str]) -> _Totals:
    result: _Totals = {}
    for name, raw in _as_mapping(value, path, problems).items():
        if not isinstance(name, str):
            problems.append(f"{path}: resource name {name!r} is not a string")
            continue
        quantity = _quantity(name, raw, f"{path}.{name}", problems)
        if quantity is not None:
            result[name] = quantity
    return result


def _quantity(resource: str, raw: object, path: str, problems: list[str]) -> Fraction | None:
    if raw is None:
        # Go's Quantity.UnmarshalJSON reads null as zero, and the key still
        # counts as set (it shadows a limit).
        return Fraction(0)
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        problems.append(f"{path}: expected a quantity string, got {_kind(raw)}")
        return None
    try:
        # Go also accepts a bare JSON number; repr() gives its shortest exact
        # text, and raises ValueError for an int too long to print.
        text = raw if isinstance(raw, str) else repr(raw)
        value = parse_resource_quantity(resource, text)
    except ValueError as exc:  # QuantityError included
        problems.append(f"{path}: {exc}")
        return None
    # apimachinery rounds every parsed quantity up to a whole nano unit.
    return Fraction(to_nano(value), 10**9)


def _add(totals: _Totals, extra: Mapping[str, Fraction]) -> None:
    for name, value in extra.items():
        totals[name] = totals.get(name, Fraction(0)) + value


def _raise_to(totals: _Totals, floor: Mapping[str, Fraction]) -> None:
    for name, value in floor.items():
        if name not in totals or totals[name] < value:
            totals[name] = value


def _as_mapping(value: object, path: str, problems: list[str]) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    problems.append(f"{path}: expected an object, got {_kind(value)}")
    return {}


def _as_list(value: object, path: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    # Only a JSON array: a string is a Sequence too, of characters.
    if isinstance(value, list):
        return value
    problems.append(f"{path}: expected a list, got {_kind(value)}")
    return []


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
