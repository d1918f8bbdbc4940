"""KubeSchedulerConfiguration for a kube-scheduler process, with or without the extender.

With an extender the document is exactly what `edge-sched scheduler-config` prints
(edge_sched.codecs.scheduler_config), so the tests run the configuration operators get.
Extenders apply to every profile of a process, so a scheduler that calls edge-sched runs
as its own kube-scheduler process with the one profile named after the pods'
`schedulerName`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edge_sched.codecs.scheduler_config import scheduler_configuration


def scheduler_config(
    name: str,
    kubeconfig: Path,
    extender_url: str | None,
    node_cache_capable: bool = True,
    bind: bool = True,
    http_timeout_s: float = 5,
) -> str:
    """KubeSchedulerConfiguration YAML (kubescheduler.config.k8s.io/v1).

    Args:
        name: the profile's schedulerName.
        kubeconfig: the scheduler's credentials (clientConnection.kubeconfig).
        extender_url: urlPrefix of the extender ("http://127.0.0.1:8000/api/v1"), or None
            for a plain scheduler.
        node_cache_capable: send NodeNames (True) or full NodeLists (False).
        bind: let the extender bind (bindVerb) instead of the default binder.
        http_timeout_s: the extender's httpTimeout.
    """
    connection = {"kubeconfig": str(Path(kubeconfig).resolve()), "qps": 100, "burst": 200}
    config: dict[str, Any]
    if extender_url is None:
        config = {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "leaderElection": {"leaderElect": False},
            "profiles": [{"schedulerName": name}],
        }
    else:
        config = scheduler_configuration(
            scheduler_name=name,
            extender_url=extender_url,
            node_cache_capable=node_cache_capable,
            bind=bind,
            http_timeout_s=http_timeout_s,
        )
    config["clientConnection"] = connection
    return yaml.safe_dump(config, sort_keys=False)
