"""TLS with client certificates (kube-scheduler's extender tlsConfig) and API_AUTH_TOKEN."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import free_port, wait_for
from tests.cluster.certs import ClusterPKI
from tests.cluster.daemon import EdgeSchedDaemon
from tests.cluster.processes import minimal_env

REPO = Path(__file__).resolve().parents[2]
POD = {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": "c"}]}}


def client_tls(pki: ClusterPKI, *, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if with_cert:
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ClusterPKI]]:
    tmp = tmp_path_factory.mktemp("tls")
    pki = ClusterPKI.generate(tmp / "pki")
    port = free_port()
    env = minimal_env(PYTHONPATH=str(REPO))
    env.update(
        HOME=str(tmp), USE_SERVICE_ACCOUNT="false", HOST="127.0.0.1", PORT=str(port),
        METRICS_PORT=str(free_port()), UDP_SERVICE_HOST="127.0.0.1", UDP_SERVICE_PORT=str(free_port(udp=True)),
        TLS_CERT_FILE=str(pki.apiserver_cert), TLS_KEY_FILE=str(pki.apiserver_key),
        TLS_CLIENT_CA_FILE=str(pki.ca_cert),
    )
    with (tmp / "daemon.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge_sched", "run"], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}/api/v1"
    try:
        with httpx.Client(verify=client_tls(pki, with_cert=True)) as c:
            def up() -> bool:
                try:
                    return c.get(url + "/scheduler/health").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, 30, "TLS health")
        yield url, pki
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0, (tmp / "daemon.log").read_text()[-3000:]


def test_client_with_certificate_is_served(tls_daemon: tuple[str, ClusterPKI]) -> None:
    url, pki = tls_daemon
    with httpx.Client(verify=client_tls(pki, with_cert=True)) as c:
        r = c.post(url + "/filter", json={"Pod": POD, "NodeNames": ["n1"]})
    assert r.status_code == 200 and r.json()["NodeNames"] == ["n1"]


def test_client_without_certificate_is_refused(tls_daemon: tuple[str, ClusterPKI]) -> None:
    url, pki = tls_daemon
    with httpx.Client(verify=client_tls(pki, with_cert=False)) as c, pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)):
        c.get(url + "/scheduler/health")


def test_plain_http_is_refused(tls_daemon: tuple[str, ClusterPKI]) -> None:
    url, _ = tls_daemon
    with httpx.Client() as c, pytest.raises(httpx.HTTPError):
        c.get(url.replace("https://", "http://") + "/scheduler/health")


def test_auth_token_guards_mutating_calls_but_not_the_extender(tmp_path: Path) -> None:
    # No router here: quantify answers from the S6.4 estimate at once.
    env = {"HOME": str(tmp_path), "USE_SERVICE_ACCOUNT": "false", "API_AUTH_TOKEN": "s3cret-token", "COMPUTING_ROUTER_ENABLED": "false"}
    d = EdgeSchedDaemon.start(env, tmp_path, free_port())
    try:
        with httpx.Client(base_url=d.api_url) as c:
            # kube-scheduler cannot send a token: the extender verbs stay open.
            assert c.post("/filter", json={"Pod": POD, "NodeNames": ["n1"]}).status_code == 200
            # Any other mutating call needs the token.
            body = {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}
            denied = c.post("/computing-power/quantify", json=body)
            assert denied.status_code == 401 and "API_AUTH_TOKEN" in denied.json()["error"]
            wrong = c.post("/computing-power/quantify", json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            ok = c.post("/computing-power/quantify", json=body, headers={"Authorization": "Bearer s3cret-token"})
            assert ok.status_code == 200
            # Reads stay open for probes and dashboards.
            assert c.get("/scheduler/health").status_code == 200
    finally:
        d.stop()
