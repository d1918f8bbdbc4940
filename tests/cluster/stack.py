"""edge-sched wired into the real control plane, as an operator would run it.

The daemon authenticates with a token of the `edge-scheduler` ServiceAccount,
whose only permissions are the ClusterRole in manifests/base/rbac.yaml (so RBAC
is exercised for real), and a kube-scheduler process runs the profile that
calls it as an extender.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from tests.cluster import ControlPlane, EdgeSchedDaemon, Proc, free_port

REPO = Path(__file__).resolve().parents[2]
RBAC = REPO / "manifests" / "base" / "rbac.yaml"
NAMESPACE = "edge-scheduler"
SERVICE_ACCOUNT = "edge-scheduler"


def daemon_kubeconfig(cp: ControlPlane, workdir: Path) -> Path:
    """Apply the manifests' RBAC and return a kubeconfig for its ServiceAccount."""
    cp.create_namespace(NAMESPACE)
    cp.apply([d for d in yaml.safe_load_all(RBAC.read_text()) if d])
    return cp.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT, workdir / "edge-sched.kubeconfig")


@attrs.define
class EdgeStack:
    daemon: EdgeSchedDaemon
    schedulers: dict[str, Proc] = attrs.field(factory=dict)

    def stop(self) -> None:
        for proc in self.schedulers.values():
            proc.stop()
        self.daemon.stop()


def start_edge_stack(
    cp: ControlPlane,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    *,
    schedulers: Mapping[str, bool] | None = None,
) -> EdgeStack:
    """Start the daemon (cluster mode) and one kube-scheduler per profile name.

    Args:
        env: extra daemon settings.
        schedulers: profile name -> nodeCacheCapable; default {"edge-scheduler": True};
            {} starts none (the test calls the daemon itself).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = daemon_kubeconfig(cp, workdir)
    daemon_env: dict[str, Any] = {"USE_SERVICE_ACCOUNT": "false", "KUBECONFIG": str(kubeconfig), "HOME": str(workdir)}
    daemon_env.update(env or {})
    daemon = EdgeSchedDaemon.start(daemon_env, workdir, free_port())
    stack = EdgeStack(daemon)
    try:
        for name, cache_capable in (schedulers if schedulers is not None else {"edge-scheduler": True}).items():
            config = cp.scheduler_config(name, cp.admin_kubeconfig, daemon.api_url, node_cache_capable=cache_capable)
            stack.schedulers[name] = cp.start_scheduler(name, config)
    except BaseException:
        stack.stop()
        raise
    return stack


def pod_manifest(
    name: str,
    namespace: str,
    *,
    scheduler: str = "edge-scheduler",
    cpu: str = "100m",
    memory: str = "64Mi",
    limits: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}}
    if limits:
        resources["limits"] = dict(limits)
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [{"name": "app", "image": "registry.example/app:1", "resources": resources}],
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def metric_value(text: str, sample: str) -> float:
    """The value of one exposition line, e.g. `x_total{a="b"}`; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
