"""KubeSchedulerConfiguration that points a scheduler profile at this extender.

Extenders in a KubeSchedulerConfiguration apply to every profile of that
kube-scheduler process, so the edge profile runs as its own scheduler next to
the default one.
"""

from __future__ import annotations

from typing import Any


def scheduler_configuration(
    *,
    scheduler_name: str,
    extender_url: str,
    kubeconfig: str | None = None,
    node_cache_capable: bool = True,
    bind: bool = True,
    http_timeout_s: float = 5.0,
    weight: int = 1,
    leader_elect: bool = False,
) -> dict[str, Any]:
    extender: dict[str, Any] = {
        "urlPrefix": extender_url.rstrip("/"),
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "preemptVerb": "preempt",
        "weight": weight,
        "enableHTTPS": extender_url.startswith("https://"),
        "nodeCacheCapable": node_cache_capable,
        "httpTimeout": f"{http_timeout_s:g}s",
        "ignorable": False,
    }
    if bind:
        extender["bindVerb"] = "bind"
    config: dict[str, Any] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {"leaderElect": leader_elect},
        "profiles": [{"schedulerName": scheduler_name}],
        "extenders": [extender],
    }
    if leader_elect:
        config["leaderElection"].update(
            {"resourceName": scheduler_name, "resourceNamespace": "kube-system"}
        )
    if kubeconfig:
        config["clientConnection"] = {"kubeconfig": kubeconfig}
    return config
