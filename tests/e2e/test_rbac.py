"""The daemon's RBAC (manifests/base/rbac.yaml) on the real API server: everything it needs, and
nothing it does not (spec S4, issue "Deployment artifacts").

The identity is exactly the daemon's: a token of the `edge-scheduler` ServiceAccount whose only
permissions are the manifests' ClusterRole, Role and bindings. The API server itself answers
each question through SelfSubjectAccessReview, so this checks the rules as Kubernetes applies
them (aggregation, wildcards, namespaces), not as the YAML reads.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import yaml

from tests.cluster import ControlPlane
from tests.cluster.stack import NAMESPACE, daemon_kubeconfig

# (verb, API group, resource, subresource, namespace; "" = cluster-wide or all namespaces)
NEEDED = [
    ("list", "", "nodes", "", ""), ("watch", "", "nodes", "", ""), ("get", "", "nodes", "", ""),
    ("list", "", "pods", "", ""), ("watch", "", "pods", "", ""), ("get", "", "pods", "", "shop"),
    ("create", "", "pods", "binding", "shop"),  # bind
    ("create", "", "events", "", "shop"),
    ("create", "batch", "jobs", "", "shop"), ("delete", "batch", "jobs", "", "shop"),  # task plans
    ("watch", "batch", "jobs", "", ""),
    ("create", "apps", "deployments", "", "shop"), ("delete", "apps", "deployments", "", "shop"),
    ("watch", "apps", "deployments", "", ""),
    ("create", "", "configmaps", "", NAMESPACE), ("update", "", "configmaps", "", NAMESPACE),  # plan state
    ("list", "", "configmaps", "", NAMESPACE), ("delete", "", "configmaps", "", NAMESPACE),
    ("list", "metrics.k8s.io", "nodes", "", ""),  # the first live-usage fallback
]
REFUSED = [
    ("get", "", "secrets", "", NAMESPACE), ("list", "", "secrets", "", ""),
    ("delete", "", "nodes", "", ""), ("patch", "", "nodes", "", ""), ("update", "", "nodes", "status", ""),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""),
    ("create", "rbac.authorization.k8s.io", "rolebindings", "", NAMESPACE),
    ("escalate", "rbac.authorization.k8s.io", "clusterroles", "", ""),
    ("create", "", "pods", "", "shop"), ("delete", "", "pods", "", "shop"), ("create", "", "pods", "eviction", "shop"),
    ("create", "", "configmaps", "", "shop"),  # plan state lives in KUBE_NAMESPACE only
    ("get", "", "configmaps", "", "kube-system"),
    ("create", "", "serviceaccounts", "token", NAMESPACE),
    ("impersonate", "", "serviceaccounts", "", ""),
    ("update", "batch", "jobs", "", "shop"), ("patch", "apps", "deployments", "", "shop"),
    ("patch", "", "events", "", "shop"), ("delete", "", "events", "", "shop"),  # posted once, never edited
]


def allowed(client: httpx.Client, verb: str, group: str, resource: str, subresource: str, namespace: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                        "subresource": subresource, "namespace": namespace}},
    }
    answer = client.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
    assert answer.status_code == 201, answer.text
    return bool(answer.json()["status"].get("allowed"))


def test_the_daemons_service_account_can_do_what_it_needs_and_nothing_else(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = yaml.safe_load(daemon_kubeconfig(control_plane, tmp_path).read_text())
    cluster, user = kubeconfig["clusters"][0]["cluster"], kubeconfig["users"][0]["user"]
    tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
    with httpx.Client(base_url=cluster["server"], verify=tls, timeout=10,
                      headers={"Authorization": f"Bearer {user['token']}"}) as client:
        whoami = client.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                             json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert whoami.json()["status"]["userInfo"]["username"] == f"system:serviceaccount:{NAMESPACE}:edge-scheduler"
        wrong = [f"needed but refused: {row}" for row in NEEDED if not allowed(client, *row)]
        wrong += [f"allowed but must be refused: {row}" for row in REFUSED if allowed(client, *row)]
        assert wrong == []
        # ... and the API server enforces it, not only answers reviews.
        assert client.get(f"/api/v1/namespaces/{NAMESPACE}/secrets").status_code == 403
        assert client.delete("/api/v1/nodes/no-such-node").status_code == 403
