"""`POST /api/v1/scheduler/plans`: a joint plan for a batch of pods (spec S10).

The body is decoded by `codecs.batch_plans`; the plan is computed by the batch planner in
a worker thread, so the extender verbs keep answering meanwhile. Bad bodies get 400 with
`Error` naming the field; an optimizer that overran its budget (a bug) gets 503.
"""

from __future__ import annotations

from quart import Blueprint, Response

from edge_sched.adapters.http.bodies import BadRequest, json_response, read_json
from edge_sched.codecs.batch_plans import PlanRequestError, parse_plan_request
from edge_sched.runtime.batch_planner import BatchPlanner, PlanOverrun


def batch_plans_blueprint(planner: BatchPlanner) -> Blueprint:
    bp = Blueprint("batch_plans", __name__)

    @bp.post("/scheduler/plans")
    async def create_plan() -> Response:
        try:
            plan = await planner.plan(parse_plan_request(await read_json()))
        except (BadRequest, PlanRequestError) as exc:
            return json_response({"Error": str(exc)}, 400)
        except PlanOverrun as exc:
            return json_response({"Error": str(exc)}, 503)
        return json_response(plan.to_json(), 201)

    return bp
