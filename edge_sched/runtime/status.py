"""What the daemon reports about itself: its phase and each component's state.

Health is 200 only while serving. "starting" lasts until the HTTP server is up
and the cache has synced once (or the start-up sync grace has passed, so an
unreachable API server degrades to standalone answers instead of a pod that
never becomes ready); "draining" starts at SIGTERM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from edge_sched.adapters.kube_watch import ReflectorStatus

STARTING, SERVING, DRAINING = "starting", "serving", "draining"


@attrs.define(eq=False)
class DaemonStatus:
    phase: str = STARTING
    kube_source: str = ""  # "" = standalone
    app_name: str = ""  # APP_NAME and APP_VERSION: the operator's labels for this deployment
    app_version: str = ""
    reflectors: dict[str, ReflectorStatus] = attrs.field(factory=dict)
    # More health components by name, each computed when health is asked (e.g. "load").
    probes: dict[str, Callable[[], Any]] = attrs.field(factory=dict)

    @property
    def healthy(self) -> bool:
        return self.phase == SERVING

    def kubernetes(self) -> str:
        if not self.kube_source:
            return "disabled"
        errors = [f"{kind}: {r.last_error}" for kind, r in self.reflectors.items() if r.last_error]
        if errors:
            return "degraded (" + "; ".join(errors) + ")"
        if all(r.synced for r in self.reflectors.values()):
            return "synced"
        return "syncing"

    def to_json(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": "healthy" if self.healthy else self.phase,
            "components": {
                "http": self.phase,
                "kubernetes": self.kubernetes(),
                **extra,
                **{name: probe() for name, probe in self.probes.items()},
            },
        }
