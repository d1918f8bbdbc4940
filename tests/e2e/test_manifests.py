"""Every kustomization in manifests/ is accepted by the real API server (docs/deployment.md).

`kubectl apply --dry-run=server -k <dir>` sends each object through the server's whole
admission chain (schema, strict field validation, RBAC object rules, Pod Security for the
Deployments' pod templates) without storing it. The static checks of the same files are in
tests/unit/test_artifacts.py; these targets are the ones test_kustomize_builds builds.

A server dry run of namespaced objects needs their namespace to exist (a dry run does not
really create it), so the module does what the docs tell an operator: apply
manifests/base/namespace.yaml first. It does so only if `edge-scheduler` is absent (other
modules of the session create it and keep it), and then deletes it again and waits until it
is gone, so that a later module can create it afresh.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ApiError, ControlPlane, wait_for

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
NAMESPACE_FILE = MANIFESTS / "base" / "namespace.yaml"
NAMESPACE = "edge-scheduler"
TARGETS = ["base", "scheduler", ".", "overlays/env-file"]  # as test_artifacts.test_kustomize_builds
DRY_RUN_LINE = re.compile(r"^(\S+) (created|configured|unchanged) \(server dry run\)$")
# kubectl, applying over an object that was not created by `kubectl apply`: other modules of the
# session create the namespace and the daemon's ServiceAccount, Role and bindings through the API.
# It says how the object was made, not what is wrong with the manifest.
UNAPPLIED_OBJECT = re.compile(
    r"^Warning: resource \S+ is missing the kubectl\.kubernetes\.io/last-applied-configuration annotation"
)


def built(cp: ControlPlane, target: str) -> list[dict[str, Any]]:
    result = cp.kubectl("kustomize", str(MANIFESTS / target))
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def kubectl_name(doc: dict[str, Any]) -> str:
    """How kubectl names an object in its output: deployment.apps/x, serviceaccount/x."""
    group = doc["apiVersion"].rpartition("/")[0]
    kind = doc["kind"].lower() + (f".{group}" if group else "")
    return f"{kind}/{doc['metadata']['name']}"


def exists(cp: ControlPlane, path: str) -> bool:
    try:
        cp.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    cp = control_plane
    path = f"/api/v1/namespaces/{NAMESPACE}"
    created = not exists(cp, path)
    if created:
        cp.kubectl("apply", "-f", str(NAMESPACE_FILE))
    try:
        yield NAMESPACE
    finally:
        if created:
            cp.kubectl("delete", "-f", str(NAMESPACE_FILE), "--wait=false")
            wait_for(lambda: not exists(cp, path), 120, f"namespace {NAMESPACE} deleted", interval_s=0.5)


@pytest.mark.parametrize("target", TARGETS)
def test_server_dry_run_accepts_every_object(control_plane: ControlPlane, namespace: str, target: str) -> None:
    cp = control_plane
    expected = sorted(kubectl_name(d) for d in built(cp, target))
    result = cp.kubectl("apply", "--dry-run=server", "-k", str(MANIFESTS / target), check=False)
    assert result.returncode == 0, result.stderr
    # No warning either (deprecated API, unknown field, Pod Security violation), except kubectl's
    # own note about objects another module created.
    warnings = [w for w in result.stderr.splitlines() if w.strip() and not UNAPPLIED_OBJECT.match(w)]
    assert warnings == [], result.stderr
    lines = [DRY_RUN_LINE.match(line) for line in result.stdout.splitlines()]
    assert all(lines), result.stdout
    assert sorted(m.group(1) for m in lines if m) == expected
    # ... and the dry run stored nothing: these objects exist only in the manifests.
    for doc in built(cp, target):
        if doc["kind"] == "Deployment":
            name = doc["metadata"]["name"]
            assert not exists(cp, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"), name


def test_pod_templates_meet_the_restricted_pod_security_standard(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The namespace's labels (enforce/warn `restricted`) on a scratch namespace, and every
    Deployment of the full install and of the .env variant dry-run into it: the server's Pod
    Security admission warns about none of them, while a copy with hostNetwork draws the warning."""
    cp = control_plane
    (ns_doc,) = [d for d in yaml.safe_load_all(NAMESPACE_FILE.read_text(encoding="utf-8")) if d]
    assert ns_doc["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
    scratch = f"edge-sched-pss-{uuid.uuid4().hex[:6]}"
    scratch_doc = {**ns_doc, "metadata": {**ns_doc["metadata"], "name": scratch}}
    cp.apply([scratch_doc])
    try:
        deployments = []
        for target in (".", "overlays/env-file"):
            for doc in built(cp, target):
                if doc["kind"] == "Deployment":
                    doc["metadata"]["namespace"] = scratch
                    deployments.append(doc)
        assert {d["metadata"]["name"] for d in deployments} == {"edge-scheduler", "edge-kube-scheduler"}
        assert len(deployments) == 4

        manifests_file = tmp_path / "deployments.yaml"
        manifests_file.write_text(yaml.safe_dump_all(deployments), encoding="utf-8")
        result = cp.kubectl("apply", "--dry-run=server", "-f", str(manifests_file), check=False)
        assert result.returncode == 0, result.stderr
        assert "PodSecurity" not in result.stderr and result.stderr == "", result.stderr

        host_network = copy.deepcopy(deployments[0])
        host_network["spec"]["template"]["spec"]["hostNetwork"] = True
        control_file = tmp_path / "host-network.yaml"
        control_file.write_text(yaml.safe_dump(host_network), encoding="utf-8")
        control = cp.kubectl("apply", "--dry-run=server", "-f", str(control_file), check=False)
        assert control.returncode == 0, control.stderr  # warn mode: a Deployment is only warned about
        assert 'would violate PodSecurity "restricted:latest"' in control.stderr, control.stderr
        assert "hostNetwork=true" in control.stderr
    finally:
        cp.delete(f"/api/v1/namespaces/{scratch}")
