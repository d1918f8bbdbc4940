"""The Quart-trio application: blueprints under the API root, JSON errors.

Every error page is JSON (`{"Error": ...}`), including 404, 405, 413 and the
500 that only a bug can produce; no HTML and no traceback reach a client.
"""

from __future__ import annotations

import logging

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from edge_sched.adapters.http.auth import token_guard
from edge_sched.adapters.http.batch_plans import batch_plans_blueprint
from edge_sched.adapters.http.bodies import json_response
from edge_sched.adapters.http.extender import extender_blueprint
from edge_sched.adapters.http.ops import ops_blueprint
from edge_sched.adapters.http.power import power_blueprint
from edge_sched.adapters.http.resource_status import resource_status_blueprint
from edge_sched.adapters.http.status_page import status_page_blueprint
from edge_sched.adapters.http.task_planning import task_planning_blueprint
from edge_sched.adapters.http.verbs import ASGIApp, ExtenderVerbs
from edge_sched.runtime.batch_planner import BatchPlanner
from edge_sched.runtime.resource_status import ResourceStatusService
from edge_sched.runtime.scheduler import Scheduler
from edge_sched.runtime.status import DaemonStatus
from edge_sched.runtime.task_plans import TaskPlanService

log = logging.getLogger(__name__)


def create_app(
    scheduler: Scheduler,
    status: DaemonStatus,
    resource_status: ResourceStatusService | None = None,
    task_plans: TaskPlanService | None = None,
    batch_planner: BatchPlanner | None = None,
) -> ASGIApp:
    """The API as one ASGI app: the extender verbs (verbs.py) ahead of the Quart app that
    serves everything else.

    Args: resource_status is None when RESOURCE_STATUS_ENABLED=false, task_plans when
    TASK_PLANNING_ENABLED=false, batch_planner when ENABLE_OPTIMIZER=false (their routes
    answer 404)."""
    settings = scheduler.settings
    app = QuartTrio("edge_sched")
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_request_bytes
    root = settings.server.api_root
    app.register_blueprint(extender_blueprint(scheduler), url_prefix=root)
    app.register_blueprint(ops_blueprint(status, scheduler.cache), url_prefix=root)
    app.register_blueprint(status_page_blueprint(root))
    if resource_status is not None:  # S8
        app.register_blueprint(resource_status_blueprint(resource_status), url_prefix=root)
    if scheduler.power is not None:  # computing power enabled (S6.5)
        app.register_blueprint(power_blueprint(scheduler.power), url_prefix=root)
    if batch_planner is not None:  # S10
        app.register_blueprint(batch_plans_blueprint(batch_planner), url_prefix=root)
    if task_plans is not None:  # S11
        app.register_blueprint(task_planning_blueprint(task_plans), url_prefix=root)

    if settings.server.auth_token:
        app.before_request(token_guard(settings.server.auth_token, root))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        reason = {413: f"body larger than MAX_REQUEST_BYTES ({settings.server.max_request_bytes})"}
        return json_response({"Error": reason.get(code, exc.description or exc.name)}, code)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error answering a request")
        return json_response({"Error": f"internal error: {exc.__class__.__name__}"}, 500)

    return ExtenderVerbs(scheduler, app)
