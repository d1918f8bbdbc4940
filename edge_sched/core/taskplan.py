"""Joint task plans (spec S11): the model, its validation, and the DAG order. Pure.

A plan is a small DAG of container tasks. `parse_plan` turns a decoded JSON/YAML document
into a frozen `TaskPlan`, or raises `PlanInvalid` listing *every* problem at once, each
prefixed with its field path (`tasks[2].cpu: ...`), because a user fixing a 40-task file
one error per round trip gives up. Checks: field types and unknown fields (a typo such as
`dependecies` must not silently drop a dependency), DNS-label names, duplicate task ids,
self-dependencies, unknown dependencies (rejected, never dropped), dependency cycles (one
concrete cycle per strongly connected component, written `a -> b -> a` where `->` reads
"waits for"), Kubernetes quantities, and the task limit (TASK_PLANNING_MAX_TASKS).

`serialized_order` is the topological order with ties broken by `task_id` (the smallest
ready id first: the lexicographically smallest valid order, so one plan always serialises
the same way); `stages` groups tasks by depth, each stage runnable in parallel once the
previous ones are done.

Beyond S11, a task may carry `annotations` for its pods (documented in
docs/task-planning.md); the `edge-sched.io/` prefix is reserved for what edge-sched writes.
"""

from __future__ import annotations

import difflib
import heapq
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs
import yaml

from edge_sched.core.quantities import QuantityError, resource_amount

TaskKind = Literal["job", "service"]
KINDS: Final[tuple[TaskKind, ...]] = ("job", "service")
GPU_RESOURCE: Final = "nvidia.com/gpu"
RESERVED_ANNOTATION_PREFIX: Final = "edge-sched.io/"

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX: Final = 63
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
# Kubernetes' relaxed environment variable name rule (any printable ASCII but '=', not
# starting with a digit is *not* required since 1.30); we keep the portable classic form,
# which every shell and every runtime accepts.
_ENV_NAME: Final = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_NAME_MAX: Final = 253
_DESCRIPTION_MAX: Final = 4096

PLAN_FIELDS: Final = ("plan_name", "description", "tasks")
TASK_FIELDS: Final = (
    "task_id", "name", "image", "dependencies", "cpu", "memory", "gpu",
    "commands", "args", "env_vars", "namespace", "kind", "annotations",
)


class PlanInvalid(ValueError):
    """The plan cannot be accepted; `problems` holds one `<field path>: <why>` line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@attrs.frozen
class Task:
    """One task as accepted: quantities kept as written and as canonical amounts."""

    task_id: str
    name: str
    image: str
    cpu: str
    memory: str
    dependencies: tuple[str, ...] = ()
    gpu: int = 0
    commands: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env_vars: tuple[tuple[str, str], ...] = ()  # in the order given
    namespace: str | None = None  # None: TASK_PLANNING_DEFAULT_NAMESPACE at submission
    kind: TaskKind = "job"
    annotations: tuple[tuple[str, str], ...] = ()  # for the task's pods

    @property
    def requests(self) -> dict[str, int]:
        """Canonical requests (millicores, bytes, devices); the values were validated."""
        out = {"cpu": resource_amount("cpu", self.cpu), "memory": resource_amount("memory", self.memory)}
        if self.gpu:
            out[GPU_RESOURCE] = self.gpu
        return out

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "task_id": self.task_id,
            "name": self.name,
            "image": self.image,
            "dependencies": list(self.dependencies),
            "cpu": self.cpu,
            "memory": self.memory,
            "gpu": self.gpu,
            "commands": list(self.commands),
            "args": list(self.args),
            "env_vars": dict(self.env_vars),
            "kind": self.kind,
        }
        if self.namespace is not None:
            doc["namespace"] = self.namespace
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


@attrs.frozen
class TaskPlan:
    """A validated plan: tasks in the order given, plus the order they run in."""

    plan_name: str
    tasks: tuple[Task, ...]
    description: str = ""
    serialized_order: tuple[str, ...] = ()
    stages: tuple[tuple[str, ...], ...] = ()

    @property
    def by_id(self) -> dict[str, Task]:
        return {t.task_id: t for t in self.tasks}

    def dependants(self) -> dict[str, tuple[str, ...]]:
        """task_id -> the tasks that wait for it directly, sorted."""
        out: dict[str, list[str]] = {t.task_id: [] for t in self.tasks}
        for task in self.tasks:
            for dep in task.dependencies:
                out[dep].append(task.task_id)
        return {k: tuple(sorted(v)) for k, v in out.items()}

    def with_default_namespace(self, namespace: str) -> TaskPlan:
        """Every task with a namespace: its own, else `namespace` (fixed at submission, so a
        later change of TASK_PLANNING_DEFAULT_NAMESPACE never moves a running plan)."""
        return attrs.evolve(
            self, tasks=tuple(t if t.namespace else attrs.evolve(t, namespace=namespace) for t in self.tasks)
        )

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(sorted({t.namespace for t in self.tasks if t.namespace}))

    def to_json(self) -> dict[str, Any]:
        """The plan as a document `parse_plan` accepts again (defaults written out)."""
        doc: dict[str, Any] = {"plan_name": self.plan_name}
        if self.description:
            doc["description"] = self.description
        doc["tasks"] = [t.to_json() for t in self.tasks]
        return doc


# ---------------------------------------------------------------- decoding text


def decode_plan_text(raw: bytes, fmt: Literal["json", "yaml"]) -> object:
    """Decode a request body or uploaded file; PlanInvalid (field `body`) says why not.

    YAML is read with `safe_load` (no object construction) and must be one document.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanInvalid([f"body: not UTF-8 ({exc.reason} at byte {exc.start})"]) from None
    if not text.strip():
        raise PlanInvalid(["body: empty; expected a plan with plan_name and tasks"])
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanInvalid([f"body: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]) from None
        except RecursionError:
            raise PlanInvalid(["body: JSON nested too deeply"]) from None
        except ValueError:  # only the integer digit limit is left after JSONDecodeError
            raise PlanInvalid(["body: invalid JSON (a number has more than 4300 digits)"]) from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlanInvalid([f"body: invalid YAML ({problem}{where})"]) from None
    except RecursionError:
        raise PlanInvalid(["body: YAML nested too deeply"]) from None
    except ValueError:  # an integer over Python's 4,300-digit limit
        raise PlanInvalid(["body: invalid YAML (a number has more than 4300 digits)"]) from None
    if len(docs) != 1:
        raise PlanInvalid([f"body: expected one YAML document, found {len(docs)}"])
    return docs[0]


# ---------------------------------------------------------------- validation


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


def _unknown_fields(doc: Mapping[Any, Any], known: Sequence[str], path: str, problems: list[str]) -> None:
    for key in doc:
        if key in known:
            continue
        hint = difflib.get_close_matches(str(key), known, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; known fields: {', '.join(known)}"
        problems.append(f"{path}{key}: unknown field{suggestion}")


def _dns_label(value: object, path: str, problems: list[str], what: str) -> str | None:
    if value is None or value == "":
        problems.append(f"{path}: required, {what} (a DNS label such as \"data-prep\")")
        return None
    if not isinstance(value, str):
        problems.append(f"{path}: expected a string ({what}), got {_kind_of(value)}")
        return None
    if len(value) > _DNS_LABEL_MAX:
        problems.append(f"{path}: {value[:20]!r}... is {len(value)} characters, at most {_DNS_LABEL_MAX}")
        return None
    if not _DNS_LABEL.fullmatch(value):
        fixed = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-") or "task"
        problems.append(
            f"{path}: {value!r} is not a DNS label (lower-case letters, digits and '-', starting and ending "
            f"with a letter or digit), e.g. {fixed[:_DNS_LABEL_MAX]!r}"
        )
        return None
    return value


def _text(value: object, path: str, problems: list[str], *, required: bool, limit: int, what: str) -> str | None:
    if value is None or value == "":
        if required:
            problems.append(f"{path}: required, {what}")
        return None
    if not isinstance(value, str):
        problems.append(f"{path}: expected a string ({what}), got {_kind_of(value)}")
        return None
    if len(value) > limit:
        problems.append(f"{path}: {len(value)} characters, at most {limit}")
        return None
    return value


def _scalar_text(value: object) -> str | None:
    """YAML writes `EPOCHS: 10` and `fail: true` unquoted; Kubernetes wants strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _string_list(value: object, path: str, problems: list[str], example: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"{path}: expected a list of strings, e.g. {example}, got {_kind_of(value)}")
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        text = _scalar_text(item)
        if text is None:
            problems.append(f"{path}[{i}]: expected a string, got {_kind_of(item)}")
        else:
            out.append(text)
    return tuple(out)


def _quantity(value: object, resource: str, path: str, problems: list[str], example: str) -> str | None:
    if value is None or value == "":
        problems.append(f"{path}: required, a Kubernetes quantity such as {example!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.append(f"{path}: expected a Kubernetes quantity such as {example!r}, got {_kind_of(value)}")
        return None
    text = str(value)
    try:
        resource_amount(resource, text)
    except QuantityError as exc:
        problems.append(f"{path}: {exc}")
        return None
    return text


def _env_vars(value: object, path: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.append(
            f"{path}: expected an object of NAME: value, e.g. {{\"EPOCHS\": \"10\"}}, got {_kind_of(value)}"
        )
        return ()
    out: list[tuple[str, str]] = []
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            problems.append(f"{path}.{key}: not a valid environment variable name (letters, digits, '_', '-', '.'; "
                            "not starting with a digit)")
            continue
        text = _scalar_text(item)
        if text is None:
            problems.append(f"{path}.{key}: expected a string, number or boolean, got {_kind_of(item)}")
            continue
        out.append((key, text))
    return tuple(out)


def _annotation_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > _NAME_MAX or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return "prefix must be a DNS subdomain such as example.com"
    if not name or len(name) > _DNS_LABEL_MAX or not _QUALIFIED_NAME.fullmatch(name):
        return "name part must be 1-63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    if key.startswith(RESERVED_ANNOTATION_PREFIX):
        return f"the {RESERVED_ANNOTATION_PREFIX} prefix is reserved for what edge-sched writes"
    return None


def _annotations(value: object, path: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.append(f"{path}: expected an object of key: value, got {_kind_of(value)}")
        return ()
    out: list[tuple[str, str]] = []
    for key, item in value.items():
        why = _annotation_key_problem(key) if isinstance(key, str) else "must be a string"
        if why is not None:
            problems.append(f"{path}.{key}: invalid annotation key: {why}")
            continue
        text = _scalar_text(item)
        if text is None:
            problems.append(f"{path}.{key}: expected a string, got {_kind_of(item)}")
            continue
        out.append((key, text))
    return tuple(out)


def _gpu(value: object, path: str, problems: list[str]) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{path}: expected a whole number of GPUs, got {_kind_of(value)} {value!r}")
        return 0
    if value < 0:
        problems.append(f"{path}: {value} is negative; use 0 or leave it out for no GPU")
        return 0
    return value


def _kind(value: object, path: str, problems: list[str]) -> TaskKind:
    if value is None:
        return "job"
    for kind in KINDS:
        if value == kind:
            return kind
    problems.append(f"{path}: {value!r} is not a task kind; expected \"job\" (runs to completion) "
                    "or \"service\" (a Deployment that stays up)")
    return "job"


def _task(raw: object, path: str, problems: list[str]) -> tuple[Task | None, list[object]]:
    """One task, or None when its id or shape is unusable; also its raw dependency list."""
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: expected an object with task_id, name, image, cpu, memory, got {_kind_of(raw)}")
        return None, []
    _unknown_fields(raw, TASK_FIELDS, f"{path}.", problems)
    before = len(problems)
    task_id = _dns_label(raw.get("task_id"), f"{path}.task_id", problems, "the task's id")
    name = _text(raw.get("name"), f"{path}.name", problems, required=True, limit=_NAME_MAX,
                 what="a human-readable name")
    image = _text(raw.get("image"), f"{path}.image", problems, required=True, limit=_NAME_MAX * 4,
                  what="a container image such as \"python:3.12-slim\"")
    if image is not None and any(c.isspace() for c in image):
        problems.append(f"{path}.image: {image!r} contains whitespace")
    cpu = _quantity(raw.get("cpu"), "cpu", f"{path}.cpu", problems, "200m")
    memory = _quantity(raw.get("memory"), "memory", f"{path}.memory", problems, "256Mi")
    gpu = _gpu(raw.get("gpu"), f"{path}.gpu", problems)
    commands = _string_list(raw.get("commands"), f"{path}.commands", problems, '["python", "train.py"]')
    args = _string_list(raw.get("args"), f"{path}.args", problems, '["--epochs", "10"]')
    env_vars = _env_vars(raw.get("env_vars"), f"{path}.env_vars", problems)
    namespace = None
    if raw.get("namespace") is not None:
        namespace = _dns_label(raw.get("namespace"), f"{path}.namespace", problems, "a namespace")
    kind = _kind(raw.get("kind"), f"{path}.kind", problems)
    annotations = _annotations(raw.get("annotations"), f"{path}.annotations", problems)
    deps = raw.get("dependencies")
    raw_deps: list[object]
    if deps is None:
        raw_deps = []
    elif isinstance(deps, list):
        raw_deps = deps
    else:
        problems.append(f"{path}.dependencies: expected a list of task ids, e.g. [\"data-prep\"], got {_kind_of(deps)}")
        raw_deps = []
    if len(problems) > before or task_id is None:
        # Still return the id so dependency checks of *other* tasks can resolve it.
        stub = None if task_id is None else Task(task_id, name or task_id, image or "-", "0", "0")
        return stub, raw_deps
    assert name is not None and image is not None and cpu is not None and memory is not None
    task = Task(task_id=task_id, name=name, image=image, cpu=cpu, memory=memory, gpu=gpu, commands=commands,
                args=args, env_vars=env_vars, namespace=namespace, kind=kind, annotations=annotations)
    return task, raw_deps


def parse_plan(doc: object, *, max_tasks: int) -> TaskPlan:
    """Validate a decoded plan document.

    Args:
        doc: the decoded JSON or YAML.
        max_tasks: TASK_PLANNING_MAX_TASKS.

    Returns:
        The plan with its serialized order and stages.

    Raises:
        PlanInvalid: with every problem found, each naming its field path.
    """
    if not isinstance(doc, Mapping):
        raise PlanInvalid([f"body: expected an object with plan_name and tasks, got {_kind_of(doc)}"])
    problems: list[str] = []
    _unknown_fields(doc, PLAN_FIELDS, "", problems)
    plan_name = _dns_label(doc.get("plan_name"), "plan_name", problems, "the plan's name")
    description = _text(doc.get("description"), "description", problems, required=False,
                        limit=_DESCRIPTION_MAX, what="free text") or ""
    raw_tasks = doc.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        problems.append("tasks: required, a non-empty list of tasks" if raw_tasks in (None, [])
                        else f"tasks: expected a list of tasks, got {_kind_of(raw_tasks)}")
        raw_tasks = []
    if len(raw_tasks) > max_tasks:
        problems.append(f"tasks: {len(raw_tasks)} tasks, at most {max_tasks} are allowed (TASK_PLANNING_MAX_TASKS); "
                        "split the plan or raise the limit")

    parsed: list[tuple[int, Task | None, list[object]]] = []
    first_index: dict[str, int] = {}
    for i, raw in enumerate(raw_tasks):
        task, raw_deps = _task(raw, f"tasks[{i}]", problems)
        if task is not None:
            if task.task_id in first_index:
                problems.append(f"tasks[{i}].task_id: {task.task_id!r} is already the id of "
                                f"tasks[{first_index[task.task_id]}]; task ids must be unique")
                task = None
            else:
                first_index[task.task_id] = i
        parsed.append((i, task, raw_deps))

    known = sorted(first_index)
    edges: dict[str, tuple[str, ...]] = {}
    tasks: list[Task] = []
    for i, task, raw_deps in parsed:
        deps = _dependencies(raw_deps, task.task_id if task else None, known, f"tasks[{i}].dependencies", problems)
        if task is not None:
            edges.setdefault(task.task_id, deps)
            tasks.append(attrs.evolve(task, dependencies=deps))
    for cycle in find_cycles(edges):
        problems.append("tasks: dependency cycle " + " -> ".join(cycle)
                        + " (each task waits for the next); remove one of these dependencies")
    if problems:
        raise PlanInvalid(problems)
    assert plan_name is not None
    return TaskPlan(
        plan_name=plan_name,
        description=description,
        tasks=tuple(tasks),
        serialized_order=tuple(topological_order(edges)),
        stages=tuple(tuple(s) for s in stages(edges)),
    )


def _dependencies(
    raw: list[object], own_id: str | None, known: Sequence[str], path: str, problems: list[str]
) -> tuple[str, ...]:
    """Dependencies that name another known task, in the order given; problems for the rest."""
    out: list[str] = []
    for j, dep in enumerate(raw):
        where = f"{path}[{j}]"
        if not isinstance(dep, str):
            problems.append(f"{where}: expected a task id (string), got {_kind_of(dep)}")
        elif dep == own_id:
            problems.append(f"{where}: task {dep!r} depends on itself; remove it from its own dependencies")
        elif dep in out:
            problems.append(f"{where}: {dep!r} is listed twice")
        elif dep not in known:
            hint = difflib.get_close_matches(dep, known, n=1)
            suggestion = f"did you mean {hint[0]!r}?" if hint else "known task ids: " + ", ".join(known[:20]) + (
                ", ..." if len(known) > 20 else "")
            problems.append(f"{where}: unknown task {dep!r}; {suggestion}")
        else:
            out.append(dep)
    return tuple(out)


# ---------------------------------------------------------------- the DAG


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's algorithm, always taking the smallest ready id.

    Args:
        deps: task -> the tasks it waits for (all keys; an acyclic graph).

    Raises:
        ValueError: the graph has a cycle or names an unknown task.
    """
    waiting = {task: len(set(d)) for task, d in deps.items()}
    dependants: dict[str, list[str]] = {task: [] for task in deps}
    for task, ds in deps.items():
        for dep in set(ds):
            if dep not in dependants:
                raise ValueError(f"{task!r} depends on unknown {dep!r}")
            dependants[dep].append(task)
    ready = [task for task, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        task = heapq.heappop(ready)
        order.append(task)
        for nxt in dependants[task]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, nxt)
    if len(order) != len(deps):
        raise ValueError("the dependency graph has a cycle")
    return order


def stages(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tasks grouped by depth (0: no dependencies; else 1 + the deepest dependency), each
    group sorted by id. Every task of a stage can run in parallel once the earlier stages
    are done; a task may of course start earlier, as soon as its own dependencies are."""
    depth: dict[str, int] = {}
    for task in topological_order(deps):
        depth[task] = 1 + max((depth[d] for d in deps[task]), default=-1)
    out: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for task in sorted(depth):
        out[depth[task]].append(task)
    return out


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with a cycle, as `[a, b, ..., a]`.

    Each cycle starts at the component's smallest id and is a shortest way back to it
    (breadth-first, neighbours in sorted order), so the message is short and stable.
    Edges to unknown tasks are ignored (reported elsewhere).
    """
    graph = {t: sorted({d for d in ds if d in deps}) for t, ds in deps.items()}
    cycles: list[list[str]] = []
    for component in _strong_components(graph):
        members = set(component)
        start = min(component)
        if len(component) == 1 and start not in graph[start]:
            continue
        parent: dict[str, str] = {}
        frontier = [start]
        found: str | None = None
        while frontier and found is None:
            nxt: list[str] = []
            for node in frontier:
                for dep in graph[node]:
                    if dep == start:
                        found = node
                        break
                    if dep in members and dep not in parent:
                        parent[dep] = node
                        nxt.append(dep)
                if found is not None:
                    break
            frontier = nxt
        assert found is not None
        path = [found]
        while path[-1] != start:
            path.append(parent[path[-1]])
        cycles.append([*reversed(path), start])
    return sorted(cycles)


def _strong_components(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (plans may be large; Python's stack is not)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


# ---------------------------------------------------------------- the reference example


def example_plan() -> dict[str, Any]:
    """The reference pipeline (data-prep -> training -> evaluation -> deployment), as served
    by `GET /api/v1/task-planning/example` and used in docs/task-planning.md."""
    return {
        "plan_name": "ml-pipeline",
        "description": "Prepare data, train a model on a GPU, evaluate it, then serve it.",
        "tasks": [
            {
                "task_id": "data-prep",
                "name": "Data preparation",
                "image": "python:3.12-slim",
                "dependencies": [],
                "cpu": "500m",
                "memory": "512Mi",
                "commands": ["python", "-c"],
                "args": ["print('preparing data')"],
                "env_vars": {"DATASET": "s3://example/raw"},
            },
            {
                "task_id": "training",
                "name": "Model training",
                "image": "pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime",
                "dependencies": ["data-prep"],
                "cpu": "2",
                "memory": "4Gi",
                "gpu": 1,
                "commands": ["python", "-c"],
                "args": ["print('training')"],
                "env_vars": {"EPOCHS": "10"},
            },
            {
                "task_id": "evaluation",
                "name": "Model evaluation",
                "image": "python:3.12-slim",
                "dependencies": ["training"],
                "cpu": "500m",
                "memory": "1Gi",
                "commands": ["python", "-c"],
                "args": ["print('evaluating')"],
            },
            {
                "task_id": "deployment",
                "name": "Model serving",
                "image": "nginx:1.27",
                "dependencies": ["evaluation"],
                "cpu": "250m",
                "memory": "256Mi",
                "kind": "service",
            },
        ],
    }
