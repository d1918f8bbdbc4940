"""The harness itself works: a real kube-scheduler binds pods to kwok nodes, kwok runs,
completes and fails pods as documented, RBAC and service-account tokens are real, the
cluster recovers from an API-server restart, and the real Prometheus scrapes the exporter
the tests control. Everything the edge-sched e2e tests build on.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import yaml

from tests.cluster import FAIL_ANNOTATION, ControlPlane, Exporter, NodeSpec, Prometheus, wait_for

pytestmark = pytest.mark.e2e

SCHEDULER = "default-scheduler"


@attrs.frozen
class Smoke:
    cp: ControlPlane
    namespace: str
    nodes: dict[str, NodeSpec]


@pytest.fixture(scope="module")
def smoke(control_plane: ControlPlane) -> Iterator[Smoke]:
    """A plain kube-scheduler (no extender), three kwok nodes of 2, 8 and 16 CPUs, a namespace."""
    cp = control_plane
    suffix = uuid.uuid4().hex[:6]
    specs = [
        NodeSpec(f"smoke-small-{suffix}", cpu="2", memory="4Gi"),
        NodeSpec(f"smoke-medium-{suffix}", cpu="8", memory="16Gi"),
        NodeSpec(f"smoke-large-{suffix}", cpu="16", memory="64Gi", gpu=2, labels={"edge-sched.test/size": "large"}),
    ]
    scheduler = cp.start_scheduler(SCHEDULER, cp.scheduler_config(SCHEDULER, cp.admin_kubeconfig, None))
    namespace = cp.create_namespace(f"smoke-{suffix}")
    try:
        cp.add_nodes(specs)
        yield Smoke(cp, namespace, {s.name: s for s in specs})
    finally:
        scheduler.stop()
        cp.delete(f"/api/v1/namespaces/{namespace}")
        cp.delete_nodes(s.name for s in specs)


def pod_manifest(name: str, cpu: str = "100m", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "schedulerName": SCHEDULER,
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": cpu}}}
            ],
        },
    }


def create(smoke: Smoke, doc: dict[str, Any]) -> dict[str, Any]:
    doc["metadata"]["namespace"] = smoke.namespace
    return smoke.cp.apply([doc])[0]


def test_pod_runs_on_the_only_node_with_room(smoke: Smoke) -> None:
    """12 CPUs fit only the 16-CPU node: scheduler and node capacities are real."""
    create(smoke, pod_manifest("big", cpu="12"))
    pod = smoke.cp.wait_for_pod_phase(smoke.namespace, "big", "Running", timeout_s=30)
    assert pod["spec"]["nodeName"].startswith("smoke-large-")
    assert pod["status"]["podIP"]
    assert pod["status"]["hostIP"].startswith("127.1.")


def test_small_pod_runs_on_a_kwok_node(smoke: Smoke) -> None:
    create(smoke, pod_manifest("small"))
    pod = smoke.cp.wait_for_pod_phase(smoke.namespace, "small", "Running", timeout_s=30)
    assert pod["spec"]["nodeName"] in smoke.nodes


def test_job_pod_is_completed_by_kwok_and_the_job_completes(smoke: Smoke) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": pod_manifest("unused")["spec"]},
        },
    }
    create(smoke, job)
    path = f"/apis/batch/v1/namespaces/{smoke.namespace}/jobs/once"

    def complete() -> bool:
        conditions = smoke.cp.get(path).get("status", {}).get("conditions", [])
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    wait_for(complete, 30, "Job once Complete")
    assert smoke.cp.get(path)["status"]["succeeded"] == 1


def test_fail_annotation_makes_the_pod_fail(smoke: Smoke) -> None:
    create(smoke, pod_manifest("doomed", annotations={FAIL_ANNOTATION: "true"}))
    pod = smoke.cp.wait_for_pod_phase(smoke.namespace, "doomed", ["Failed", "Succeeded"], timeout_s=30)
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_service_account_token_is_least_privilege(smoke: Smoke, tmp_path: Path) -> None:
    """A TokenRequest kubeconfig authenticates as the ServiceAccount, and RBAC limits it."""
    ns = smoke.namespace
    smoke.cp.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": ns}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "pod-reader", "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
            },
        ]
    )
    kubeconfig = yaml.safe_load(smoke.cp.service_account_kubeconfig(ns, "reader", tmp_path / "kc").read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    cluster = kubeconfig["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    with httpx.Client(base_url=cluster["server"], verify=ctx, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get(f"/api/v1/namespaces/{ns}/pods").status_code == 200
        assert c.get("/api/v1/nodes").status_code == 403
        assert c.get("/api/v1/namespaces/default/pods").status_code == 403


def test_cluster_recovers_from_apiserver_restart(smoke: Smoke) -> None:
    """After a restart the API answers, and scheduler and kwok reconnect: a new pod runs."""
    smoke.cp.restart_apiserver(down_s=1)
    assert smoke.cp.get(f"/api/v1/namespaces/{smoke.namespace}")["status"]["phase"] == "Active"
    create(smoke, pod_manifest("after-restart"))
    pod = smoke.cp.wait_for_pod_phase(smoke.namespace, "after-restart", "Running", timeout_s=45)
    assert pod["spec"]["nodeName"] in smoke.nodes


def test_prometheus_scrapes_the_exporter(tmp_path: Path) -> None:
    """Samples set on the Exporter become series in the real Prometheus, and follow updates."""
    with Exporter() as exporter:
        exporter.set("edge_test_node_cpu_utilisation", {"node": "n1"}, 0.95)
        with Prometheus.start(tmp_path, targets=[exporter.addr], scrape_interval_s=1) as prom:
            [series] = prom.wait_for_series('edge_test_node_cpu_utilisation{node="n1"}')
            assert float(series["value"][1]) == 0.95
            exporter.set("edge_test_node_cpu_utilisation", {"node": "n1"}, 0.25)
            wait_for(
                lambda: prom.query('edge_test_node_cpu_utilisation{node="n1"} == 0.25'),
                15,
                "the updated sample in Prometheus",
            )
