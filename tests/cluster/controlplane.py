"""A real, local Kubernetes control plane for the end-to-end tests and the demo.

etcd, kube-apiserver, kube-controller-manager and kwok (fake nodes), each a child process
on free 127.0.0.1 ports with its state and log in one work directory; kube-schedulers are
started per test with the configuration the test needs. Everything is the real program
at the pinned release (tests/cluster/build-binaries.sh); only the kubelets are simulated.

Lean on purpose, for a fast start on two cores: no cloud, storage, network or certificate
controllers, no API priority-and-fairness, no endpoint reconciliation of the `kubernetes`
service; what the product relies on is there: RBAC and Node authorization, TokenRequest,
the Job, Deployment/ReplicaSet, garbage-collection, namespace, service-account and
node-lifecycle controllers.
"""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.cluster import kwok
from tests.cluster.certs import ClusterPKI
from tests.cluster.kubeconfig import write_kubeconfig
from tests.cluster.ports import free_port
from tests.cluster.processes import Proc, minimal_env, stop_all
from tests.cluster.resources import apply as apply_docs
from tests.cluster.resources import raise_for_status
from tests.cluster.scheduler import scheduler_config as _scheduler_config
from tests.cluster.waiting import wait_for

NodeSpec = kwok.NodeSpec

_CONTROLLERS = (
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "disruption-controller",
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
    "clusterrole-aggregation-controller",
)
_NOT_READY_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


class ControlPlane:
    """A running control plane. Build it with `ControlPlane.start(workdir, bin_dir)`.

    Attributes:
        workdir: everything lives here: pki/, etcd data, configs, *.log.
        bin_dir: where the programs come from.
        api_url: https://127.0.0.1:<port> of kube-apiserver.
        ca_file: the cluster CA (verifies the API server).
        admin_kubeconfig: kubeconfig of a system:masters client certificate.
        procs: name -> Proc of every process started (schedulers included).
    """

    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(bin_dir).resolve()
        self.procs: dict[str, Proc] = {}
        self.pki: ClusterPKI | None = None
        self.api_url = ""
        self.ca_file = self.workdir / "pki" / "ca.crt"
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self._ssl: ssl.SSLContext | None = None
        self._client: httpx.Client | None = None
        self._stopped = False

    # ---------------------------------------------------------------- start / stop

    @classmethod
    def start(
        cls,
        workdir: Path,
        bin_dir: Path,
        *,
        job_complete_delay_s: float = 1.0,
        fail_delay_s: float = 1.0,
        timeout_s: float = 90.0,
    ) -> ControlPlane:
        """Start etcd, kube-apiserver, kube-controller-manager and kwok; wait until usable.

        Usable means: /readyz is ok and the `default` ServiceAccount exists (pods can be
        created in `default`).

        Args:
            workdir: an empty or new directory for state and logs.
            bin_dir: from `kube_bin_dir()`.
            job_complete_delay_s: how long a Job's pod stays Running before kwok marks it
                Succeeded (see tests/cluster/kwok.py).
            fail_delay_s: same for pods annotated `edge-sched.test/fail: "true"` -> Failed.
            timeout_s: overall budget for each readiness wait.

        Raises:
            ProcessExited, WaitTimeout: a component did not come up (log tail included).
        """
        cp = cls(workdir, bin_dir)
        try:
            cp._start(job_complete_delay_s, fail_delay_s, timeout_s)
        except BaseException:
            cp.stop()
            raise
        return cp

    def _start(self, job_complete_delay_s: float, fail_delay_s: float, timeout_s: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = pki = ClusterPKI.generate(self.workdir / "pki")
        self.ca_file = pki.ca_cert
        self._ssl = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._ssl.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))

        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                self.bin_dir / "etcd",
                "--name=default",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Test data: durability is not worth an fsync per write on a shared disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            port=etcd_port,
        )
        with httpx.Client(timeout=2) as plain:
            wait_for(
                lambda: plain.get(f"{etcd_url}/health").json().get("health") == "true",
                timeout_s,
                "etcd /health",
                procs=[etcd],
            )

        self.api_url = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                self.bin_dir / "kube-apiserver",
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.apiserver_cert}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                # The advertise address is loopback, which an Endpoints object may not hold.
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--allow-privileged=true",
                "--v=1",
            ],
            port=api_port,
        )
        self._wait_apiserver_ready(timeout_s)

        write_kubeconfig(
            self.admin_kubeconfig,
            server=self.api_url,
            ca_file=pki.ca_cert,
            user="admin",
            client_cert=pki.admin_cert,
            client_key=pki.admin_key,
        )
        self._spawn(
            "kube-controller-manager",
            [
                self.bin_dir / "kube-controller-manager",
                f"--kubeconfig={self.admin_kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={','.join(_CONTROLLERS)}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                "--use-service-account-credentials=false",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                "--concurrent-job-syncs=10",
                "--v=1",
            ],
        )
        kwok_config = self.workdir / "kwok.yaml"
        kwok_config.write_text(
            kwok.kwok_config(job_complete_delay_s=job_complete_delay_s, fail_delay_s=fail_delay_s)
        )
        self._spawn("kwok", kwok.kwok_argv(self.bin_dir, self.admin_kubeconfig, kwok_config))
        self.wait_for_service_account("default", "default", timeout_s)

    def _spawn(self, name: str, argv: list[Any], *, port: int | None = None) -> Proc:
        proc = Proc.start(name, argv, self.workdir / f"{name}.log", env=minimal_env(), port=port)
        self.procs[name] = proc
        return proc

    def _wait_apiserver_ready(self, timeout_s: float) -> None:
        with self.client(timeout_s=2) as c:
            wait_for(
                lambda: c.get("/readyz").status_code == 200,
                timeout_s,
                "kube-apiserver /readyz",
                procs=[self.procs["kube-apiserver"]],
            )

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a few seconds). Idempotent."""
        if self._client is not None:
            self._client.close()
            self._client = None
        # Clients of the API server first, all at once; then the API server; then etcd.
        order = [name for name in self.procs if name not in ("kube-apiserver", "etcd")]
        stop_all([self.procs[n] for n in order], timeout_s=5)
        for name in ("kube-apiserver", "etcd"):
            if name in self.procs:
                self.procs[name].stop(timeout_s=5)
        self._stopped = True

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def restart_apiserver(self, down_s: float = 0, timeout_s: float = 60) -> None:
        """Stop kube-apiserver, wait `down_s`, start it again on the same port, wait ready."""
        self.stop_apiserver()
        time.sleep(down_s)
        self.start_apiserver(timeout_s)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (its port then refuses connections) until `start_apiserver`.

        The stop is SIGTERM with 3 s grace, then SIGKILL: the server drains ordinary
        requests in milliseconds but then waits for the open watch streams of the other
        components (until their own timeouts, minutes), which no test needs to sit out.
        """
        self.procs["kube-apiserver"].stop(timeout_s=3)
        if self._client is not None:  # its pooled connections died with the server
            self._client.close()
            self._client = None

    def start_apiserver(self, timeout_s: float = 60) -> None:
        """Start the stopped kube-apiserver again on the same port and wait until it is ready."""
        self.procs["kube-apiserver"].restart()
        self._wait_apiserver_ready(timeout_s)

    def restart_controllers(self) -> None:
        """Restart kube-controller-manager and kwok. After a long API server outage their
        watches back off and new nodes stay NotReady for a minute or more; fresh
        processes list everything again at once."""
        for name in ("kube-controller-manager", "kwok"):
            self.procs[name].restart()

    # ---------------------------------------------------------------- logs

    @property
    def log_paths(self) -> dict[str, Path]:
        return {name: proc.log_path for name, proc in self.procs.items()}

    def logs_tail(self, lines: int = 25) -> str:
        """The last lines of every process's log, for a failing test's report."""
        parts = []
        for name, proc in self.procs.items():
            state = "running" if proc.alive else f"exited {proc.returncode}"
            parts.append(f"--- {name} ({state}) {proc.log_path}\n{proc.log_tail(lines)}")
        return "\n".join(parts)

    # ---------------------------------------------------------------- API access

    def client(self, *, timeout_s: float = 10) -> httpx.Client:
        """A new admin httpx.Client on the API server (base_url = api_url); close it."""
        assert self._ssl is not None, "control plane not started"
        return httpx.Client(base_url=self.api_url, verify=self._ssl, timeout=timeout_s)

    @property
    def _api(self) -> httpx.Client:
        if self._client is None:
            self._client = self.client()
        return self._client

    def get(self, path: str, **params: Any) -> Any:
        """GET `path` as admin and return the decoded JSON (ApiError on failure)."""
        return raise_for_status(self._api.get(path, params=params)).json()

    def delete(self, path: str, *, missing_ok: bool = True) -> None:
        """DELETE `path` as admin (background propagation); a 404 is fine if `missing_ok`."""
        resp = self._api.request("DELETE", path, json={"propagationPolicy": "Background"})
        if resp.status_code == 404 and missing_ok:
            return
        raise_for_status(resp)

    def apply(self, docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create each object, or replace it if it exists (see resources.apply)."""
        return apply_docs(self._api, docs)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl as admin; for debugging and tests that want kubectl's view."""
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def wait_for_service_account(self, namespace: str, name: str = "default", timeout_s: float = 30) -> None:
        def exists() -> bool:
            return self._api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}").status_code == 200

        wait_for(exists, timeout_s, f"ServiceAccount {namespace}/{name}", procs=self._core_procs())

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        """Create (or keep) namespace `name` and wait for its `default` ServiceAccount."""
        doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}
        self.apply([doc])
        self.wait_for_service_account(name)
        return name

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, expiration_s: int = 4 * 3600
    ) -> Path:
        """A kubeconfig authenticating as ServiceAccount `namespace/name` (TokenRequest).

        The ServiceAccount must exist; its permissions are whatever RBAC grants it.
        """
        token_request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_s},
        }
        resp = self._api.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json=token_request
        )
        token = raise_for_status(resp).json()["status"]["token"]
        return write_kubeconfig(
            Path(path), server=self.api_url, ca_file=self.ca_file, user=f"{namespace}-{name}", token=token,
            namespace=namespace,
        )

    # ---------------------------------------------------------------- nodes

    def add_nodes(self, nodes: Iterable[NodeSpec], timeout_s: float = 30) -> list[str]:
        """Create kwok fake nodes and wait until each is Ready and has no not-ready taint.

        Returns:
            The node names.
        """
        docs = [kwok.node_manifest(n, n.internal_ip or kwok.next_node_ip()) for n in nodes]
        self.apply(docs)
        names = {d["metadata"]["name"] for d in docs}

        def all_ready() -> bool:
            items = self.get("/api/v1/nodes")["items"]
            ready = set()
            for node in items:
                conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                taints = {t["key"] for t in node.get("spec", {}).get("taints", []) or []}
                if conditions.get("Ready") == "True" and not taints & _NOT_READY_TAINTS:
                    ready.add(node["metadata"]["name"])
            return names <= ready

        wait_for(all_ready, timeout_s, f"nodes {sorted(names)} Ready", procs=self._core_procs())
        return sorted(names)

    def delete_nodes(self, names: Iterable[str]) -> None:
        for name in names:
            self.delete(f"/api/v1/nodes/{name}")

    # ---------------------------------------------------------------- pods

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def wait_for_pod_phase(
        self, namespace: str, name: str, phases: str | Iterable[str], timeout_s: float = 30
    ) -> dict[str, Any]:
        """Wait until the pod's phase is one of `phases`; return the pod."""
        wanted = {phases} if isinstance(phases, str) else set(phases)

        def in_phase() -> dict[str, Any] | None:
            pod = self.pod(namespace, name)
            return pod if pod.get("status", {}).get("phase") in wanted else None

        return wait_for(
            in_phase, timeout_s, f"pod {namespace}/{name} phase in {sorted(wanted)}", procs=self._core_procs()
        )

    # ---------------------------------------------------------------- schedulers

    def scheduler_config(
        self,
        name: str,
        kubeconfig: Path,
        extender_url: str | None,
        node_cache_capable: bool = True,
        bind: bool = True,
        http_timeout_s: float = 5,
    ) -> str:
        """KubeSchedulerConfiguration YAML; see tests/cluster/scheduler.py."""
        return _scheduler_config(name, kubeconfig, extender_url, node_cache_capable, bind, http_timeout_s)

    def start_scheduler(self, name: str, config_yaml: str, timeout_s: float = 30) -> Proc:
        """Start a kube-scheduler with `config_yaml`; return when its /readyz is ok.

        Its log is `<workdir>/kube-scheduler-<name>.log`; `Proc.stop()` ends it (the control
        plane's `stop()` does too). Starting a second scheduler of the same name replaces
        the first.
        """
        proc_name = f"kube-scheduler-{name}"
        if proc_name in self.procs:
            self.procs.pop(proc_name).stop()
        config = self.workdir / f"{proc_name}.yaml"
        config.write_text(config_yaml)
        port = free_port()
        proc = self._spawn(
            proc_name,
            [
                self.bin_dir / "kube-scheduler",
                f"--config={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / (proc_name + '-certs')}",
                f"--authentication-kubeconfig={self.admin_kubeconfig}",
                f"--authorization-kubeconfig={self.admin_kubeconfig}",
                # Level 2 logs each scheduling attempt and binding: what a failing test needs.
                "--v=2",
            ],
            port=port,
        )
        # Loopback health probe of a self-signed endpoint: nothing to verify it against.
        with httpx.Client(verify=False, timeout=2) as c:  # noqa: S501
            wait_for(
                lambda: c.get(f"https://127.0.0.1:{port}/readyz").status_code == 200,
                timeout_s,
                f"{proc_name} /readyz",
                procs=[proc],
            )
        return proc

    def _core_procs(self) -> list[Proc]:
        return [p for n, p in self.procs.items() if n in ("etcd", "kube-apiserver", "kube-controller-manager", "kwok")]
