"""KubeSchedulerConfiguration that points a scheduler profile at this extender.

Extenders in a KubeSchedulerConfiguration apply to every profile of that
kube-scheduler process, so the edge profile runs as its own scheduler next to
the default one.

By default the profile leaves resource fit to edge-sched (the in-tree
`NodeResourcesFit` *filter* is disabled; its scoring stays): kube-scheduler only
calls an extender with the nodes its own filters let through, so with both on,
a pod too big for every node would never reach edge-sched and its events would
not carry edge-sched's reasons. edge-sched implements the same request
arithmetic (init containers, sidecars, overhead, pod-level resources) and
additionally counts pods it has bound but not yet seen (docs/scheduler-profile.md).
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
    extender_owns_fit: bool = True,
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
    profile: dict[str, Any] = {"schedulerName": scheduler_name}
    if extender_owns_fit:
        profile["plugins"] = {"filter": {"disabled": [{"name": "NodeResourcesFit"}]}}
    config: dict[str, Any] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {"leaderElect": leader_elect},
        "profiles": [profile],
        "extenders": [extender],
    }
    if leader_elect:
        config["leaderElection"].update(
            {"resourceName": scheduler_name, "resourceNamespace": "kube-system"}
        )
    if kubeconfig:
        config["clientConnection"] = {"kubeconfig": kubeconfig}
    return config
