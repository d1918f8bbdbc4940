"""The task-planning API (spec S11), under the API root.

POST   /task-planning/plans            JSON, or YAML with Content-Type application/yaml;
                                       ?deploy=false: dry run (order, stages, placements)
POST   /task-planning/upload           multipart/form-data, field `file`: .json, .yaml or .yml
GET    /task-planning/plans            every stored plan, summarised
GET    /task-planning/plans/<name>     phase, per-task state, attempts, nodes, timestamps, errors
DELETE /task-planning/plans/<name>     stop the plan and delete what it created
GET    /task-planning/example          the reference pipeline (?format=yaml for YAML)

Answers: 400 lists every problem of an invalid plan (`problems`, one `<field path>: <why>`
each); 409 a name clash; 503 deploying in standalone mode or while the deployer loads;
401 without the bearer token when API_AUTH_TOKEN is set (the app's guard covers every
mutating route here).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

import yaml
from quart import Blueprint, Response, request

from edge_sched.adapters.http.bodies import json_response
from edge_sched.core.taskplan import PlanInvalid, TaskPlan, decode_plan_text, example_plan, parse_plan
from edge_sched.core.taskrun import describe, summary
from edge_sched.errors import KubeError
from edge_sched.runtime.task_plans import TaskPlanError, TaskPlanService

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json", "text/json", ""})
EXTENSIONS: dict[str, Literal["json", "yaml"]] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _deploy_flag() -> bool:
    raw = request.args.get("deploy", "true").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise _Refused(400, f"deploy: {raw!r} is not a boolean; use deploy=false for a dry run")


def _body_format() -> Literal["json", "yaml"]:
    mimetype = (request.mimetype or "").lower()
    if mimetype in YAML_TYPES:
        return "yaml"
    if mimetype in JSON_TYPES:
        return "json"
    raise _Refused(
        415,
        f"Content-Type {mimetype!r}: send the plan as application/json or application/yaml, "
        "or upload a file to /task-planning/upload",
    )


def _invalid(exc: PlanInvalid, plan_name: object) -> Response:
    named = f" {plan_name!r}" if isinstance(plan_name, str) and plan_name else ""
    n = len(exc.problems)
    return json_response(
        {"error": f"plan{named} is invalid: {n} problem{'s' if n != 1 else ''}; fix them and send it again",
         "problems": exc.problems},
        400,
    )


def task_planning_blueprint(service: TaskPlanService) -> Blueprint:
    bp = Blueprint("task_planning", __name__)
    max_tasks = service.settings.task_planning.max_tasks

    async def accept(doc: object, deploy: bool) -> Response:
        try:
            plan: TaskPlan = parse_plan(doc, max_tasks=max_tasks)
        except PlanInvalid as exc:
            return _invalid(exc, doc.get("plan_name") if isinstance(doc, dict) else None)
        if not deploy:
            resolved, placement = await service.dry_run(plan)
            return json_response(describe(resolved, None, placements=placement.nodes, placement_note=placement.note))
        try:
            run = await service.submit(plan)
        except TaskPlanError as exc:
            return json_response({"error": str(exc)}, exc.status)
        except KubeError as exc:
            return json_response({"error": f"storing the plan in Kubernetes failed: {exc}"}, 502)
        response = json_response(describe(run.plan, run.state), 201)
        response.headers["Location"] = f"{request.root_path}{request.path}/{run.name}"
        return response

    @bp.post("/task-planning/plans")
    async def create() -> Response:
        try:
            deploy = _deploy_flag()
            fmt = _body_format()
            raw: bytes = await request.get_data(as_text=False)  # type: ignore[assignment]  # bytes when as_text=False
            doc = decode_plan_text(raw, fmt)
        except _Refused as exc:
            return json_response({"error": str(exc)}, exc.status)
        except PlanInvalid as exc:
            return _invalid(exc, None)
        return await accept(doc, deploy)

    @bp.post("/task-planning/upload")
    async def upload() -> Response:
        try:
            deploy = _deploy_flag()
            files = await request.files
            upload = files.get("file")
            if upload is None and len(files) == 1:
                upload = next(iter(files.values()))
            if upload is None:
                raise _Refused(400, "file: send the plan as multipart/form-data with a field named 'file' "
                                    "(a .json, .yaml or .yml file)")
            suffix = PurePath(upload.filename or "").suffix.lower()
            fmt = EXTENSIONS.get(suffix)
            if fmt is None:
                raise _Refused(400, f"file: {upload.filename!r} is not a .json, .yaml or .yml file")
            doc = decode_plan_text(upload.read(), fmt)
        except _Refused as exc:
            return json_response({"error": str(exc)}, exc.status)
        except PlanInvalid as exc:
            return _invalid(exc, None)
        return await accept(doc, deploy)

    @bp.get("/task-planning/plans")
    async def index() -> Response:
        body: dict[str, Any] = {
            "mode": "standalone" if service.kube is None else "cluster",
            "plans": [summary(r.plan, r.state) for _, r in sorted(service.runs.items())],
        }
        if service.unreadable:
            body["unreadable"] = dict(service.unreadable)
        if service.kube is not None and not service.loaded:
            body["note"] = "the deployer is still loading stored plans"
        return json_response(body)

    @bp.get("/task-planning/plans/<name>")
    async def show(name: str) -> Response:
        try:
            run = service.get(name)
        except TaskPlanError as exc:
            return json_response({"error": str(exc)}, exc.status)
        body = describe(run.plan, run.state)
        if run.problem:
            body["problem"] = run.problem
        return json_response(body)

    @bp.delete("/task-planning/plans/<name>")
    async def remove(name: str) -> Response:
        try:
            finished, _run = await service.delete(name)
        except TaskPlanError as exc:
            return json_response({"error": str(exc)}, exc.status)
        except KubeError as exc:
            return json_response({"error": f"deleting the plan failed: {exc}; send DELETE again"}, 502)
        if finished:
            return json_response({"plan_name": name, "deleted": True})
        return json_response(
            {"plan_name": name, "deleted": False, "note": "cleanup continues in the background"}, 202
        )

    @bp.get("/task-planning/example")
    async def example() -> Response:
        doc = example_plan()
        if request.args.get("format", "json").lower() in ("yaml", "yml"):
            text = yaml.safe_dump(doc, sort_keys=False)
            return Response(text, status=200, content_type="application/yaml")
        return json_response(doc)

    return bp
