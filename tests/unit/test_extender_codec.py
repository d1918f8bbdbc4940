"""Extender wire format: Go field names, any case in, exact names out (C01, C02, C04)."""

import json
import random

import pytest

from edge_sched.codecs import extender as wire

POD = {"metadata": {"name": "p1", "namespace": "default", "uid": "u-1"}}


def test_node_names_form_with_explicit_null_nodes() -> None:
    # C01: nodeCacheCapable=true sends "Nodes": null.
    args = wire.parse_extender_args({"Pod": POD, "Nodes": None, "NodeNames": ["node-a", "node-b"]})
    assert args.node_names == ("node-a", "node-b")
    assert not args.uses_node_objects


def test_node_objects_form_with_null_names() -> None:
    body = {"Pod": POD, "Nodes": {"items": [{"metadata": {"name": "node-a"}}]}, "NodeNames": None}
    args = wire.parse_extender_args(body)
    assert args.uses_node_objects and args.node_names is None


def test_keys_match_case_insensitively() -> None:
    # C02: lower-case keys give the same arguments.
    upper = wire.parse_extender_args({"Pod": POD, "Nodes": None, "NodeNames": ["n1"]})
    lower = wire.parse_extender_args({"pod": POD, "nodes": None, "nodenames": ["n1"], "extra": 1})
    assert upper == lower


def test_neither_form_means_no_candidates() -> None:
    args = wire.parse_extender_args({"Pod": POD})
    result = wire.filter_result(args, [], {}, {})
    assert result["NodeNames"] == [] and result["Nodes"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: expected a JSON object, got list"),
        ({}, "Pod: required"),
        ({"Pod": None}, "Pod: required"),
        ({"Pod": "x"}, "Pod: expected an object, got str"),
        ({"Pod": POD, "NodeNames": "n1"}, "NodeNames: expected a list of strings"),
        ({"Pod": POD, "NodeNames": [1]}, "NodeNames: expected a list of strings"),
        ({"Pod": POD, "Nodes": []}, "Nodes: expected a NodeList object"),
        ({"Pod": POD, "Nodes": {"items": [1]}}, "Nodes.items: expected a list of Node objects"),
    ],
)
def test_bad_bodies_name_the_field(body: object, message: str) -> None:
    with pytest.raises(wire.ExtenderInputError, match=f"^{message}$"):
        wire.parse_extender_args(body)


def test_filter_result_echoes_node_objects_untouched() -> None:
    # C04: surviving objects go back exactly as received.
    node_a = {"metadata": {"name": "node-a", "labels": {"zone": "z1"}},
              "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}}
    node_b = {"metadata": {"name": "node-b"}, "status": {"allocatable": {"cpu": "500m"}}}
    args = wire.parse_extender_args(
        {"Pod": POD, "NodeNames": None, "Nodes": {"kind": "NodeList", "items": [node_a, node_b]}}
    )
    result = wire.filter_result(args, ["node-a"], {"node-b": "insufficient cpu"}, {})
    assert result == {
        "Nodes": {"kind": "NodeList", "items": [node_a]},
        "NodeNames": None,
        "FailedNodes": {"node-b": "insufficient cpu"},
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }
    assert result["Nodes"]["items"][0] is node_a


def test_filter_result_never_names_nodes_not_offered() -> None:
    args = wire.parse_extender_args({"Pod": POD, "NodeNames": ["n1"]})
    result = wire.filter_result(args, ["n1", "ghost"], {}, {})
    assert result["NodeNames"] == ["n1"]


def test_host_priority_list_uses_go_names() -> None:
    answer = wire.HostPriorityList.of({"n1": 7})
    assert answer == [{"Host": "n1", "Score": 7}]
    assert answer.encoded == b'[{"Host":"n1","Score":7}]'


def test_binding_args_any_case() -> None:
    canonical = wire.parse_binding_args(
        {"PodName": "web-0", "PodNamespace": "default", "PodUID": "u-1", "Node": "n1"}
    )
    folded = wire.parse_binding_args({"podname": "web-0", "podnamespace": "default", "poduid": "u-1", "node": "n1"})
    assert canonical == folded == wire.BindingArgs("web-0", "default", "u-1", "n1")
    with pytest.raises(wire.ExtenderInputError, match="^Node: required$"):
        wire.parse_binding_args({"PodName": "web-0", "PodUID": "u-1"})
    assert wire.binding_result() == {"Error": ""}


def test_preemption_converts_victims_to_meta_victims() -> None:
    args = wire.parse_preemption_args(
        {
            "Pod": POD,
            "NodeNameToVictims": {
                "n1": {"Pods": [{"metadata": {"uid": "v1"}}], "NumPDBViolations": 1}
            },
            "NodeNameToMetaVictims": {"n2": {"pods": [{"uid": "v2"}]}},
        }
    )
    assert wire.preemption_result(args.victims) == {
        "NodeNameToMetaVictims": {
            "n2": {"Pods": [{"UID": "v2"}], "NumPDBViolations": 0},
            "n1": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 1},
        }
    }


@pytest.mark.parametrize("pods", [1.5, 7, True])
def test_preemption_victim_pods_that_are_not_a_list_are_a_bad_request(pods: object) -> None:
    # Found by tests/faults: a number here raised TypeError (HTTP 500).
    with pytest.raises(wire.ExtenderInputError, match=r"NodeNameToMetaVictims\.n1\.Pods: expected a list"):
        wire.parse_preemption_args({"Pod": {}, "NodeNameToMetaVictims": {"n1": {"Pods": pods}}})


def test_host_priority_list_encodes_as_json_dumps_would() -> None:
    """The column encoder (kept `{"Host":…` heads) gives json.dumps's bytes for any host
    name (quotes, backslashes, control and non-ASCII characters, lone surrogates) and score."""
    rng = random.Random(4)
    alphabet = 'ab"\\\u00e9\u2028\x00\n-\ud800'
    for _ in range(300):
        names = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(6))) for _ in range(rng.randrange(12))]
        answer = wire.HostPriorityList.of({n: rng.choice([0, 3, 10, 11, -1]) for n in names})
        assert answer.encoded == json.dumps(answer.to_json(), separators=(",", ":")).encode()
        assert json.loads(answer.encoded) == answer
