"""What the extender keeps, over HTTP: recent decisions, plans and scores (spec S5).

The verbs themselves (filter, prioritize, bind, preempt) are answered ahead of the Quart
app, by `verbs.ExtenderVerbs`.
"""

from __future__ import annotations

from quart import Blueprint, Response

from edge_sched.adapters.http.bodies import json_response
from edge_sched.runtime.scheduler import Scheduler


def extender_blueprint(scheduler: Scheduler) -> Blueprint:
    bp = Blueprint("extender", __name__)

    def plan_of(namespace: str, pod: str) -> Response:
        plan = scheduler.plans.get(f"{namespace}/{pod}")
        if plan is None:
            return json_response({"error": f"no current plan for pod {namespace}/{pod}"}, 404)
        return json_response(plan.to_json())

    def scores_of(namespace: str, pod: str) -> Response:
        plan = scheduler.plans.get(f"{namespace}/{pod}")
        if plan is None:
            return json_response({"error": f"no current scores for pod {namespace}/{pod}"}, 404)
        data = plan.to_json()
        return json_response({"pod": data["pod"], "scores": data["scores"]})

    @bp.get("/scheduler/decisions")
    async def decisions() -> Response:
        """Recent binds, newest first (bounded; for the status page and demos)."""
        return json_response({"decisions": [d.to_json() for d in reversed(scheduler.recent)]})

    @bp.get("/scheduler/plan/<namespace>/<pod>")
    async def plan(namespace: str, pod: str) -> Response:
        return plan_of(namespace, pod)

    @bp.get("/scheduler/plan/<pod>")
    async def plan_default(pod: str) -> Response:
        return plan_of("default", pod)

    @bp.get("/scheduler/scores/<namespace>/<pod>")
    async def scores(namespace: str, pod: str) -> Response:
        return scores_of(namespace, pod)

    @bp.get("/scheduler/scores/<pod>")
    async def scores_default(pod: str) -> Response:
        return scores_of("default", pod)

    return bp
