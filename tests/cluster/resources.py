"""Create-or-replace of Kubernetes objects over plain HTTP (the harness's `kubectl apply`).

Kind -> REST path is a fixed table for the kinds tests use: the group/version comes from
each document's `apiVersion`, the table gives the plural and whether it is namespaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

# kind -> (plural, namespaced)
KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "Node": ("nodes", False),
    "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True),
    "Secret": ("secrets", True),
    "Service": ("services", True),
    "Pod": ("pods", True),
    "Event": ("events", True),
    "ResourceQuota": ("resourcequotas", True),
    "LimitRange": ("limitranges", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "Job": ("jobs", True),
    "CronJob": ("cronjobs", True),
    "Deployment": ("deployments", True),
    "ReplicaSet": ("replicasets", True),
    "StatefulSet": ("statefulsets", True),
    "DaemonSet": ("daemonsets", True),
    "PriorityClass": ("priorityclasses", False),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
    "Lease": ("leases", True),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
}


class ApiError(RuntimeError):
    """The API server refused a request; `status`, `reason` and the server's `message`."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path} -> {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def raise_for_status(resp: httpx.Response) -> httpx.Response:
    """Return `resp` if 2xx, else raise `ApiError` carrying the Status message."""
    if resp.is_success:
        return resp
    reason, message = resp.reason_phrase, resp.text
    try:
        body = resp.json()
    except ValueError:
        pass
    else:
        if isinstance(body, dict):
            reason = body.get("reason", reason)
            message = body.get("message", message)
    raise ApiError(resp.request.method, resp.request.url.path, resp.status_code, reason, message)


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    """REST path of the collection holding objects of `kind`.

    Raises:
        ValueError: `kind` is not in `KINDS`.
    """
    try:
        plural, namespaced = KINDS[kind]
    except KeyError:
        raise ValueError(f"kind {kind!r} is not known to the harness; add it to KINDS") from None
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        return f"{prefix}/namespaces/{namespace or 'default'}/{plural}"
    return f"{prefix}/{plural}"


def object_path(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata", {})
    return f"{collection_path(doc['apiVersion'], doc['kind'], meta.get('namespace'))}/{meta['name']}"


def apply(client: httpx.Client, docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Create each object, or replace it when it exists; return the stored objects.

    Replacing keeps the server's resourceVersion, so it is a full update (fields the
    document leaves out are dropped), like `kubectl replace`.

    Raises:
        ApiError: the API server refused (message included), e.g. an immutable field.
        ValueError: unknown kind, or a document without apiVersion/kind/metadata.name.
    """
    stored = []
    for doc in docs:
        if doc is None:  # empty YAML documents
            continue
        try:
            meta = doc["metadata"]
            name = meta["name"]
            collection = collection_path(doc["apiVersion"], doc["kind"], meta.get("namespace"))
        except KeyError as exc:
            raise ValueError(f"document lacks {exc}: {dict(doc)!r:.200}") from None
        resp = client.post(collection, json=doc)
        if resp.status_code == 409:
            current = raise_for_status(client.get(f"{collection}/{name}")).json()
            body = {**doc, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
            resp = client.put(f"{collection}/{name}", json=body)
        stored.append(raise_for_status(resp).json())
    return stored
