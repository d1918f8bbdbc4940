"""Task-plan validation and DAG order (spec S11): every rule, all problems at once."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sched.core.taskplan import (
    PlanInvalid,
    TaskPlan,
    decode_plan_text,
    example_plan,
    find_cycles,
    parse_plan,
    stages,
    topological_order,
)


def task(task_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "name": task_id.title(), "image": "busybox:1.36",
            "dependencies": list(deps), "cpu": "100m", "memory": "64Mi", **extra}


def plan(*tasks: dict[str, Any], name: str = "p", **extra: Any) -> dict[str, Any]:
    return {"plan_name": name, "tasks": list(tasks), **extra}


def problems(doc: object, max_tasks: int = 100) -> list[str]:
    with pytest.raises(PlanInvalid) as info:
        parse_plan(doc, max_tasks=max_tasks)
    assert str(info.value) == "; ".join(info.value.problems)
    return info.value.problems


def ok(doc: object, max_tasks: int = 100) -> TaskPlan:
    return parse_plan(doc, max_tasks=max_tasks)


# ---------------------------------------------------------------- the reference pipeline


def test_reference_pipeline_orders_data_prep_training_evaluation_deployment() -> None:
    p = ok(example_plan())
    assert p.serialized_order == ("data-prep", "training", "evaluation", "deployment")
    assert p.stages == (("data-prep",), ("training",), ("evaluation",), ("deployment",))
    by_id = p.by_id
    assert by_id["training"].gpu == 1
    assert by_id["training"].requests == {"cpu": 2000, "memory": 4 * 2**30, "nvidia.com/gpu": 1}
    assert by_id["deployment"].kind == "service"
    assert by_id["data-prep"].kind == "job"


def test_a_plan_round_trips_through_its_json() -> None:
    p = ok(example_plan()).with_default_namespace("ml")
    again = ok(json.loads(json.dumps(p.to_json())))
    assert again == p
    assert {t.namespace for t in again.tasks} == {"ml"}


def test_default_namespace_fills_only_tasks_without_one() -> None:
    p = ok(plan(task("a"), task("b", namespace="team-b"))).with_default_namespace("default")
    assert [t.namespace for t in p.tasks] == ["default", "team-b"]
    assert p.namespaces == ("default", "team-b")


# ---------------------------------------------------------------- order and stages


def test_diamond() -> None:
    p = ok(plan(task("d", "b", "c"), task("c", "a"), task("b", "a"), task("a")))
    assert p.serialized_order == ("a", "b", "c", "d")
    assert p.stages == (("a",), ("b", "c"), ("d",))


def test_chain_given_backwards() -> None:
    ids = [f"t{i:02d}" for i in range(10)]
    tasks = [task(ids[i], *( [ids[i - 1]] if i else [])) for i in range(10)]
    p = ok(plan(*reversed(tasks)))
    assert list(p.serialized_order) == ids
    assert [list(s) for s in p.stages] == [[i] for i in ids]


def test_forest_ties_break_by_task_id_not_by_input_order() -> None:
    # Two trees and a lone task; ready ties always take the smallest id.
    p = ok(plan(task("z-root"), task("m-child", "z-root"), task("b-root"), task("a-child", "b-root"), task("k")))
    assert p.serialized_order == ("b-root", "a-child", "k", "z-root", "m-child")
    assert p.stages == (("b-root", "k", "z-root"), ("a-child", "m-child"))


def test_stage_is_one_more_than_the_deepest_dependency() -> None:
    p = ok(plan(task("a"), task("b", "a"), task("c", "b"), task("d", "a", "c"), task("e")))
    assert p.stages == (("a", "e"), ("b",), ("c",), ("d",))


def test_hundred_task_layered_graph() -> None:
    rng = random.Random(7)
    ids = [f"t{i:03d}" for i in range(100)]
    tasks = []
    for i, tid in enumerate(ids):
        deps = sorted(rng.sample(ids[:i], k=min(i, rng.randint(0, 3))))
        tasks.append(task(tid, *deps))
    rng.shuffle(tasks)
    p = ok(plan(*tasks), max_tasks=100)
    position = {t: i for i, t in enumerate(p.serialized_order)}
    stage_of = {t: i for i, s in enumerate(p.stages) for t in s}
    assert sorted(p.serialized_order) == ids
    for t in p.tasks:
        for dep in t.dependencies:
            assert position[dep] < position[t.task_id]
            assert stage_of[dep] < stage_of[t.task_id]
        assert stage_of[t.task_id] == (1 + max((stage_of[d] for d in t.dependencies), default=-1))
    assert sum(len(s) for s in p.stages) == 100
    assert all(list(s) == sorted(s) for s in p.stages)


def test_hundred_independent_tasks_are_one_stage_in_id_order() -> None:
    ids = [f"job-{i}" for i in range(100)]
    p = ok(plan(*(task(i) for i in reversed(ids))))
    assert p.serialized_order == tuple(sorted(ids))
    assert p.stages == (tuple(sorted(ids)),)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_order_is_the_smallest_valid_order(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    ids = [f"n{i}" for i in range(n)]
    perm = data.draw(st.permutations(ids))  # a hidden valid order
    deps = {t: sorted(data.draw(st.sets(st.sampled_from(perm[:i]))) if i else []) for i, t in enumerate(perm)}
    order = topological_order(deps)
    # Valid, and at every step the smallest ready id was taken.
    done: set[str] = set()
    for t in order:
        ready = [x for x in ids if x not in done and all(d in done for d in deps[x])]
        assert t == min(ready)
        done.add(t)
    assert find_cycles(deps) == []
    assert sorted(x for s in stages(deps) for x in s) == sorted(ids)


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        topological_order({"a": ["b"], "b": ["a"]})


# ---------------------------------------------------------------- validation rules


def test_valid_minimal_plan() -> None:
    p = ok({"plan_name": "x", "tasks": [{"task_id": "a", "name": "A", "image": "i", "cpu": "1", "memory": "1Gi"}]})
    assert p.tasks[0].dependencies == ()
    assert p.tasks[0].kind == "job"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("Train_Pipeline", "plan_name: 'Train_Pipeline' is not a DNS label"),
        ("-x", "plan_name: '-x' is not a DNS label"),
        ("a" * 64, "at most 63"),
        (None, "plan_name: required"),
        (5, "plan_name: expected a string"),
    ],
)
def test_plan_name_must_be_a_dns_label(name: object, fragment: str) -> None:
    found = problems({"plan_name": name, "tasks": [task("a")]})
    assert any(fragment in p for p in found), found


def test_dns_label_problem_suggests_a_valid_name() -> None:
    assert "e.g. 'train-pipeline'" in problems(plan(task("a"), name="Train_Pipeline"))[0]


def test_task_ids_must_be_dns_labels() -> None:
    assert problems(plan(task("Data Prep"))) == [
        "tasks[0].task_id: 'Data Prep' is not a DNS label (lower-case letters, digits and '-', starting and "
        "ending with a letter or digit), e.g. 'data-prep'"
    ]


def test_duplicate_ids() -> None:
    assert problems(plan(task("a"), task("b"), task("a"))) == [
        "tasks[2].task_id: 'a' is already the id of tasks[0]; task ids must be unique"
    ]


def test_self_dependency() -> None:
    assert problems(plan(task("a", "a"))) == [
        "tasks[0].dependencies[0]: task 'a' depends on itself; remove it from its own dependencies"
    ]


def test_unknown_dependency_is_rejected_with_a_suggestion() -> None:
    assert problems(plan(task("data-prep"), task("train", "data-prpe"))) == [
        "tasks[1].dependencies[0]: unknown task 'data-prpe'; did you mean 'data-prep'?"
    ]


def test_unknown_dependency_without_a_close_match_lists_known_ids() -> None:
    assert problems(plan(task("a"), task("b", "zzz"))) == [
        "tasks[1].dependencies[0]: unknown task 'zzz'; known task ids: a, b"
    ]


def test_dependency_listed_twice() -> None:
    assert problems(plan(task("a"), task("b", "a", "a"))) == ["tasks[1].dependencies[1]: 'a' is listed twice"]


def test_two_cycle_shows_the_cycle() -> None:
    assert problems(plan(task("a", "b"), task("b", "a"))) == [
        "tasks: dependency cycle a -> b -> a (each task waits for the next); remove one of these dependencies"
    ]


def test_longer_cycle_is_shown_from_its_smallest_id_with_a_tail_ignored() -> None:
    found = problems(plan(task("c", "a"), task("a", "b"), task("b", "c"), task("d", "c")))
    assert found == [
        "tasks: dependency cycle a -> b -> c -> a (each task waits for the next); remove one of these dependencies"
    ]


def test_each_separate_cycle_is_reported() -> None:
    found = problems(plan(task("a", "b"), task("b", "a"), task("x", "y"), task("y", "z"), task("z", "x"), task("ok")))
    assert [p.split(" (")[0] for p in found] == [
        "tasks: dependency cycle a -> b -> a",
        "tasks: dependency cycle x -> y -> z -> x",
    ]


def test_cycle_shown_is_a_shortest_way_back() -> None:
    # a waits for b and c; c waits for a directly, b only through d.
    assert find_cycles({"a": ["b", "c"], "b": ["d"], "d": ["a"], "c": ["a"]}) == [["a", "c", "a"]]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("cpu", "2 cores", "tasks[0].cpu: '2 cores': unexpected ' ' after the number"),
        ("cpu", "-1", "tasks[0].cpu: '-1': must not be negative"),
        ("memory", "1Gb", "tasks[0].memory: '1Gb': unknown suffix 'Gb'"),
        ("memory", "1gi", "tasks[0].memory: '1gi': unknown suffix 'gi' (gibi is 'Gi')"),
        ("memory", None, "tasks[0].memory: required, a Kubernetes quantity such as '256Mi'"),
        ("cpu", True, "tasks[0].cpu: expected a Kubernetes quantity such as '200m', got boolean"),
    ],
)
def test_quantities_are_validated(field: str, value: object, expected: str) -> None:
    found = problems(plan(task("a", **{field: value})))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_numeric_quantities_are_accepted_as_yaml_writes_them() -> None:
    p = ok(plan(task("a", cpu=2, memory=1073741824)))
    assert p.tasks[0].requests == {"cpu": 2000, "memory": 2**30}


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [(-1, "tasks[0].gpu: -1 is negative"), (1.5, "tasks[0].gpu: expected a whole number"),
     (True, "tasks[0].gpu: expected a whole number")],
)
def test_gpu_must_be_a_whole_non_negative_number(gpu: object, expected: str) -> None:
    assert problems(plan(task("a", gpu=gpu)))[0].startswith(expected)


def test_too_many_tasks() -> None:
    found = problems(plan(*(task(f"t{i}") for i in range(101))), max_tasks=100)
    assert found == [
        "tasks: 101 tasks, at most 100 are allowed (TASK_PLANNING_MAX_TASKS); split the plan or raise the limit"
    ]


def test_exactly_max_tasks_is_fine() -> None:
    assert len(ok(plan(*(task(f"t{i}") for i in range(100))), max_tasks=100).tasks) == 100


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    doc = {
        "plan_name": "Bad Name",
        "tasks": [
            task("a", "ghost", cpu="lots"),
            task("b", "b", memory="1Gb"),
            task("c", "d"),
            task("d", "c"),
            {"task_id": "a", "name": "", "image": "has space", "cpu": "1", "memory": "1Gi", "dependecies": ["a"]},
        ],
    }
    found = problems(doc, max_tasks=4)
    paths = [p.split(":")[0] for p in found]
    assert paths == [
        "plan_name",
        "tasks",
        "tasks[0].cpu",
        "tasks[1].memory",
        "tasks[4].dependecies",
        "tasks[4].name",
        "tasks[4].image",
        "tasks[4].task_id",
        "tasks[0].dependencies[0]",
        "tasks[1].dependencies[0]",
        "tasks",
    ]
    assert "did you mean 'dependencies'?" in found[4]
    assert "cycle c -> d -> c" in found[-1]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], "body: expected an object with plan_name and tasks, got list"),
        ({"plan_name": "p"}, "tasks: required, a non-empty list of tasks"),
        ({"plan_name": "p", "tasks": []}, "tasks: required, a non-empty list of tasks"),
        ({"plan_name": "p", "tasks": {"a": {}}}, "tasks: expected a list of tasks, got object"),
        ({"plan_name": "p", "tasks": ["a"]},
         "tasks[0]: expected an object with task_id, name, image, cpu, memory, got string"),
        (plan(task("a", kind="daemon")), "tasks[0].kind: 'daemon' is not a task kind"),
        (plan(task("a", commands="python train.py")), "tasks[0].commands: expected a list of strings"),
        (plan(task("a", args=[{"x": 1}])), "tasks[0].args[0]: expected a string, got object"),
        (plan(task("a", env_vars=["A=1"])), "tasks[0].env_vars: expected an object of NAME: value"),
        (plan(task("a", env_vars={"1BAD": "x"})), "tasks[0].env_vars.1BAD: not a valid environment variable name"),
        (plan(task("a", env_vars={"A": [1]})), "tasks[0].env_vars.A: expected a string, number or boolean"),
        (plan(task("a", namespace="Team A")), "tasks[0].namespace: 'Team A' is not a DNS label"),
        (plan(task("a", dependencies="b")), "tasks[0].dependencies: expected a list of task ids"),
        (plan(task("a", dependencies=[1])), "tasks[0].dependencies[0]: expected a task id (string), got integer"),
        (plan(task("a", image="")), "tasks[0].image: required"),
        (plan(task("a", name=None)), "tasks[0].name: required"),
        (plan(task("a", annotations={"edge-sched.io/planned-node": "n1"})),
         "tasks[0].annotations.edge-sched.io/planned-node: invalid annotation key: "
         "the edge-sched.io/ prefix is reserved"),
        (plan(task("a", annotations={"bad key": "x"})), "tasks[0].annotations.bad key: invalid annotation key"),
        (plan(task("a"), extra=1), "extra: unknown field; known fields: plan_name, description, tasks"),
        (plan(task("a"), description=7), "description: expected a string"),
    ],
)
def test_shape_rules(doc: object, expected: str) -> None:
    found = problems(doc)
    assert any(p.startswith(expected) for p in found), found


def test_optional_fields_are_kept() -> None:
    p = ok(plan(task("a", commands=["python", "-c"], args=["print(1)", 10], env_vars={"EPOCHS": 10, "DEBUG": True},
                     namespace="ml", kind="service", gpu=2, annotations={"edge-sched.test/fail": True}),
                description="demo"))
    t = p.tasks[0]
    assert t.commands == ("python", "-c")
    assert t.args == ("print(1)", "10")
    assert t.env_vars == (("EPOCHS", "10"), ("DEBUG", "true"))
    assert (t.namespace, t.kind, t.gpu) == ("ml", "service", 2)
    assert t.annotations == (("edge-sched.test/fail", "true"),)
    assert p.description == "demo"


def test_dependants() -> None:
    p = ok(plan(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")))
    assert p.dependants() == {"a": ("b", "c"), "b": ("d",), "c": ("d",), "d": ()}


# ---------------------------------------------------------------- text


def test_yaml_and_json_bodies_decode_alike() -> None:
    import yaml

    doc = example_plan()
    assert decode_plan_text(yaml.safe_dump(doc).encode(), "yaml") == doc
    assert decode_plan_text(json.dumps(doc).encode(), "json") == doc


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        (b"", "json", "body: empty"),
        (b"{", "json", "body: invalid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        (b"\xff", "json", "body: not UTF-8"),
        (b"a: [1,\n", "yaml", "body: invalid YAML ("),
        (b"a: 1\n---\nb: 2\n", "yaml", "body: expected one YAML document, found 2"),
        (b"!!python/object:os.system {}", "yaml", "body: invalid YAML"),
        # Found by tests/faults: these escaped as RecursionError / ValueError (HTTP 500).
        (b"[" * 100_000, "json", "body: JSON nested too deeply"),
        (b"[" * 100_000, "yaml", "body: YAML nested too deeply"),
        (b'{"a": ' + b"1" * 5000 + b"}", "json", "body: invalid JSON (a number has more than 4300 digits)"),
        (b"a: " + b"1" * 5000, "yaml", "body: invalid YAML (a number has more than 4300 digits)"),
    ],
)
def test_bad_text(raw: bytes, fmt: str, expected: str) -> None:
    with pytest.raises(PlanInvalid) as info:
        decode_plan_text(raw, fmt)  # type: ignore[arg-type]
    assert info.value.problems[0].startswith(expected), info.value.problems
