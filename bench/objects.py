"""Node and Pod objects shaped like what kube-apiserver returns for kwok nodes and their pods.

Sizes matter for the memory and start-up figures: a real Pod from a list carries
managedFields, conditions, container statuses and the service-account token volume
(about 3.5 KB of JSON), a real Node about 2.5 KB. The benchmarks build these once per
index and never hold more than they need.
"""

from __future__ import annotations

from typing import Any

STAMP = "2025-01-01T00:00:00Z"


def node_name(i: int) -> str:
    return f"bench-node-{i:05d}"


def node_object(i: int) -> dict[str, Any]:
    name = node_name(i)
    resources = {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "metadata": {
            "name": name,
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(1000 + i),
            "creationTimestamp": STAMP,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "topology.kubernetes.io/zone": f"zone-{i % 4}",
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "managedFields": [
                {
                    "manager": "kwok", "operation": "Update", "apiVersion": "v1", "time": STAMP,
                    "fieldsType": "FieldsV1", "subresource": "status",
                    "fieldsV1": {"f:status": {"f:allocatable": {}, "f:capacity": {}, "f:conditions": {},
                                              "f:daemonEndpoints": {}, "f:nodeInfo": {}, "f:phase": {}}},
                }
            ],
        },
        "spec": {"podCIDR": f"10.{i // 250}.{i % 250}.0/24"},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True" if t == "Ready" else "False", "lastHeartbeatTime": STAMP,
                 "lastTransitionTime": STAMP, "reason": f"Kubelet{t}", "message": f"kubelet {t}"}
                for t in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
            ],
            "addresses": [
                {"type": "InternalIP", "address": f"10.{100 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "kwok-v0.8.0",
                "kernelVersion": "kwok-v0.8.0", "kubeProxyVersion": "kwok-v0.8.0", "kubeletVersion": "kwok-v0.8.0",
                "machineID": "", "operatingSystem": "linux", "osImage": "kwok-v0.8.0", "systemUUID": "",
            },
        },
    }


def pod_object(i: int, node: str | None, *, cpu: str = "100m", memory: str = "64Mi") -> dict[str, Any]:
    name = f"bench-pod-{i:06d}"
    spec: dict[str, Any] = {
        "schedulerName": "edge-scheduler",
        "containers": [
            {
                "name": "app",
                "image": "registry.example/app:1",
                "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": "128Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "securityContext": {},
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "volumes": [
            {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                              "fieldPath": "metadata.namespace"}}]}},
            ]}}
        ],
    }
    status: dict[str, Any] = {"phase": "Pending", "qosClass": "Burstable"}
    if node is not None:
        spec["nodeName"] = node
        status = {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": STAMP}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "hostIP": "10.100.0.1",
            "podIP": f"10.244.{i // 250 % 250}.{i % 250 + 1}",
            "podIPs": [{"ip": f"10.244.{i // 250 % 250}.{i % 250 + 1}"}],
            "startTime": STAMP,
            "containerStatuses": [
                {"name": "app", "state": {"running": {"startedAt": STAMP}}, "lastState": {}, "ready": True,
                 "restartCount": 0, "image": "registry.example/app:1", "imageID": "", "started": True}
            ],
            "qosClass": "Burstable",
        }
    return {
        "metadata": {
            "name": name,
            "namespace": "bench",
            "uid": f"10000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(100000 + i),
            "creationTimestamp": STAMP,
            "labels": {"app": "bench", "pod-template-hash": "5d8f7c9b4"},
            "managedFields": [
                {"manager": "bench", "operation": "Update", "apiVersion": "v1", "time": STAMP, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                              "f:spec": {"f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {},
                                                                              "f:resources": {}}}}}},
                {"manager": "kwok", "operation": "Update", "apiVersion": "v1", "time": STAMP, "fieldsType": "FieldsV1",
                 "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {},
                                           "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}},
            ],
        },
        "spec": spec,
        "status": status,
    }


def pending_pod(i: int) -> dict[str, Any]:
    """A pod as kube-scheduler sends it to the extender (not yet on a node)."""
    return pod_object(i, None)
