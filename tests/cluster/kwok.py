"""kwok: fake nodes and the lifecycle of the pods bound to them.

kwok (sigs.k8s.io/kwok, run as the `kwok` controller binary) manages the Node objects
carrying the annotation `kwok.x-k8s.io/node: fake` and the pods bound to them, driven by
Stage resources given in its `--config` file. The stages here are kwok v0.8.0's
`kustomize/stage/node/fast`, `node/heartbeat-with-lease` and `pod/fast`, adapted:

node-initialize        Node not Ready -> Ready, with the node's own addresses, capacity and
                       allocatable kept (the harness sets them), kubelet version "kwok-…".
node-heartbeat-with-lease
                       refreshes node conditions every 10-20 min; liveness in between comes
                       from the node Lease kwok renews (nodeLeaseDurationSeconds 40), which
                       is what the node-lifecycle controller watches.
pod-ready              Pending pod on a kwok node -> Running and Ready at once, with hostIP
                       (the node's InternalIP) and a pod IP from --cidr.
pod-complete           Running pod owned by a Job -> Succeeded (exit 0) after
                       `job_complete_delay_s`; the pod annotation
                       `edge-sched.test/complete-after: "<Go duration>"` overrides the delay.
                       Pods that carry the fail annotation below never complete.
edge-sched-pod-fail    Running pod with annotation `edge-sched.test/fail: "true"` -> Failed
                       (container exit code 1, reason Error) after `fail_delay_s`;
                       `edge-sched.test/fail-after: "<Go duration>"` overrides the delay.
                       A Job's pod failing this way counts as a Job pod failure (backoffLimit).
pod-delete             pod with a deletionTimestamp -> deleted (there is no kubelet to do it).

Other pods (no Job owner, no fail annotation) stay Running until deleted.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

# The annotation kwok selects managed nodes by (--manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAIL_ANNOTATION = "edge-sched.test/fail"
FAIL_AFTER_ANNOTATION = "edge-sched.test/fail-after"
COMPLETE_AFTER_ANNOTATION = "edge-sched.test/complete-after"
GPU_RESOURCE = "nvidia.com/gpu"
FPGA_RESOURCE = "example.com/fpga"
# Pod IPs are status data only (nothing connects to them); a /16 leaves room for many pods.
POD_CIDR = "10.0.0.0/16"

Taint = Mapping[str, str] | str


@attrs.frozen
class NodeSpec:
    """A fake node: its name, allocatable (= capacity) resources, labels and taints.

    `taints` items are `{"key", "value"?, "effect"}` dicts or `"key=value:Effect"` strings.
    `internal_ip` defaults to a distinct 127.1.x.y address (loopback, so nothing can leave
    the machine even if a component tried to reach the "kubelet").
    """

    name: str
    cpu: str = "8"
    memory: str = "16Gi"
    pods: str = "110"
    gpu: int = 0
    fpga: int = 0
    labels: Mapping[str, str] = attrs.field(factory=dict)
    taints: Sequence[Taint] = attrs.field(factory=list)
    internal_ip: str | None = None
    ephemeral_storage: str = "100Gi"
    extra_resources: Mapping[str, str] = attrs.field(factory=dict)

    def resources(self) -> dict[str, str]:
        res = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
        }
        if self.gpu:
            res[GPU_RESOURCE] = str(self.gpu)
        if self.fpga:
            res[FPGA_RESOURCE] = str(self.fpga)
        res.update(self.extra_resources)
        return res


_ip_counter = itertools.count(1)


def next_node_ip() -> str:
    n = next(_ip_counter)
    return f"127.1.{n // 250}.{n % 250 + 1}"


def parse_taint(taint: Taint) -> dict[str, str]:
    """`"key=value:Effect"` or `"key:Effect"` or a dict -> a Node taint dict."""
    if isinstance(taint, Mapping):
        return dict(taint)
    key_value, sep, effect = taint.rpartition(":")
    if not sep or not effect:
        raise ValueError(f"taint {taint!r} is not key[=value]:Effect")
    key, _, value = key_value.partition("=")
    out = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out


def node_manifest(spec: NodeSpec, internal_ip: str) -> dict[str, Any]:
    """The Node object for `spec`, ready for kwok to take over."""
    resources = spec.resources()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": spec.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **spec.labels,
            },
        },
        "spec": {"taints": [parse_taint(t) for t in spec.taints]},
        # Nodes may carry status on create (kubelets register that way).
        "status": {
            "allocatable": resources,
            "capacity": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": internal_ip},
                {"type": "Hostname", "address": spec.name},
            ],
        },
    }


def kwok_config(*, job_complete_delay_s: float, fail_delay_s: float) -> str:
    """The multi-document YAML given to `kwok --config`: the Stages."""
    return (
        _CONFIG.replace("@COMPLETE_MS@", str(round(job_complete_delay_s * 1000)))
        .replace("@FAIL_MS@", str(round(fail_delay_s * 1000)))
        .replace("@FAIL_ANNOTATION@", FAIL_ANNOTATION)
        .replace("@FAIL_AFTER_ANNOTATION@", FAIL_AFTER_ANNOTATION)
        .replace("@COMPLETE_AFTER_ANNOTATION@", COMPLETE_AFTER_ANNOTATION)
    )


def kwok_argv(bin_dir: Path, kubeconfig: Path, config: Path) -> list[str]:
    return [
        str(bin_dir / "kwok"),
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",
    ]


# Go templates (kwok's statusTemplate) inside YAML: kept as text, placeholders @…@.
# No KwokConfiguration document: one in the file is not defaulted (v0.8.0 then fails
# with "node leases parallelism must be greater than 0"); the flags set what differs.
_CONFIG = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}

      {{ $hasInternalIP := false }}
      {{ $hasHostname := false }}
      {{ range .status.addresses }}
        {{ if eq .type "InternalIP" }}
          {{ $hasInternalIP = true }}
        {{ end }}
        {{ if eq .type "Hostname" }}
          {{ $hasHostname = true }}
        {{ end }}
      {{ end }}
      {{ if or (not $hasInternalIP) (not $hasHostname) }}
      addresses:
      {{ end }}
      {{ if not $hasInternalIP }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ end }}
      {{ if not $hasHostname }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      allocatable:
      {{ with .status.allocatable }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}
      capacity:
      {{ with .status.capacity }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}

      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        bootID: {{ or $nodeInfo.bootID `""` }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        machineID: {{ or $nodeInfo.machineID `""` }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        osImage: {{ or $nodeInfo.osImage `""` }}
        systemUUID: {{ or $nodeInfo.systemUUID `""` }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'True'
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values:
      - 'Job'
    - key: '.metadata.annotations["@FAIL_ANNOTATION@"]'
      operator: 'NotIn'
      values:
      - 'true'
  delay:
    durationMilliseconds: @COMPLETE_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@COMPLETE_AFTER_ANNOTATION@"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: ContainersReady
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: edge-sched-pod-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.annotations["@FAIL_ANNOTATION@"]'
      operator: 'In'
      values:
      - 'true'
  delay:
    durationMilliseconds: @FAIL_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@FAIL_AFTER_ANNOTATION@"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodFailed
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodFailed
        type: ContainersReady
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 1
            finishedAt: {{ $now | Quote }}
            reason: Error
            message: "failed on purpose (annotation @FAIL_ANNOTATION@)"
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Failed
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"""
