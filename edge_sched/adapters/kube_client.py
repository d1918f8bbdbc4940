"""The one caller of the Kubernetes API server.

Credentials come from the `kubernetes` package (kubeconfig, exec plugins,
in-cluster service account with token rotation); requests and watches go
through one async httpx client on trio, so no thread pool sits in the hot path
and every call is bounded by a trio cancel scope. HTTP statuses are mapped onto
the `KubeError` tree here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from edge_sched.errors import KubeConflict, KubeError, KubeGone, KubeNotFound, KubeRetryable

log = logging.getLogger(__name__)

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@attrs.frozen
class KubeTarget:
    """Where the API server is and how to authenticate to it."""

    server: str
    ssl_context: ssl.SSLContext | bool
    # Returns the current Authorization header value, or None (client certs).
    authorization: Callable[[], str | None]
    source: str  # "in-cluster" or the kubeconfig path, for health and logs


def _target_from_configuration(cfg: Any, source: str) -> KubeTarget:
    if cfg.verify_ssl:
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)

    def authorization() -> str | None:
        # The in-cluster loader installs a hook that re-reads the rotated token.
        if cfg.refresh_api_key_hook is not None:
            cfg.refresh_api_key_hook(cfg)
        # auth_settings() hides which key this client version stores the token
        # under ("authorization" in older releases, "BearerToken" in newer ones).
        bearer = cfg.auth_settings().get("BearerToken") or {}
        value = bearer.get("value")
        return str(value) if value else None

    return KubeTarget(cfg.host.rstrip("/"), context, authorization, source)


def load_kube_target(
    *, use_service_account: bool, kubeconfig: str | None, environ: Mapping[str, str] | None = None
) -> KubeTarget | None:
    """Resolve credentials, or None when no cluster is configured (standalone mode).

    With USE_SERVICE_ACCOUNT=true but no in-cluster environment (a daemon on an
    edge host, a developer laptop), fall back to a kubeconfig as kubectl does.
    """
    env = os.environ if environ is None else environ
    # Imported here: the package is large and standalone mode never needs it.
    from kubernetes.client import Configuration
    from kubernetes.config import incluster_config, kube_config

    if use_service_account and env.get("KUBERNETES_SERVICE_HOST") and IN_CLUSTER_TOKEN.exists():
        cfg = Configuration()
        # The kubernetes package ships no type annotations.
        loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(IN_CLUSTER_TOKEN),
            cert_filename=str(IN_CLUSTER_TOKEN.with_name("ca.crt")),
        )
        loader.load_and_set(cfg)  # type: ignore[no-untyped-call]
        return _target_from_configuration(cfg, "in-cluster")
    candidates = [kubeconfig] if kubeconfig else []
    candidates += [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates.append(str(Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"))
    for path in candidates:
        if Path(path).is_file():
            cfg = Configuration()
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=cfg, persist_config=False
            )
            return _target_from_configuration(cfg, path)
    return None


def _error_for(status: int, body: str, headers: Mapping[str, str]) -> KubeError:
    message = body
    try:
        decoded = json.loads(body)
        if isinstance(decoded, dict) and decoded.get("message"):
            message = str(decoded["message"])
    except ValueError:
        pass
    message = f"HTTP {status}: {message.strip()[:500]}"
    if status == 404:
        return KubeNotFound(message, status)
    if status == 409:
        return KubeConflict(message, status)
    if status == 410:
        return KubeGone(message, status)
    if status == 429 or status >= 500:
        retry_after: float | None = None
        try:
            retry_after = float(headers.get("retry-after", ""))
        except ValueError:
            pass
        return KubeRetryable(message, status, retry_after)
    return KubeError(message, status)


class KubeClient:
    """Async JSON client for the API server. Bound by `request_timeout_s`."""

    def __init__(self, target: KubeTarget, request_timeout_s: float) -> None:
        self.target = target
        self.request_timeout_s = request_timeout_s
        # Timeouts are enforced by cancel scopes, not by httpx.
        self._http = httpx.AsyncClient(
            base_url=target.server,
            verify=target.ssl_context,
            timeout=None,
            headers={"Accept": "application/json", "User-Agent": "edge-sched"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        value = self.target.authorization()
        return {"Authorization": value} if value else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        """One API call; raises a `KubeError` subclass for every failure."""
        with trio.move_on_after(self.request_timeout_s) as scope:
            try:
                response = await self._http.request(
                    method, path, params=params, json=body, headers=self._headers()
                )
            except httpx.HTTPError as exc:
                raise KubeRetryable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if scope.cancelled_caught:
            raise KubeRetryable(f"{method} {path}: no answer within {self.request_timeout_s}s")
        if response.status_code >= 300:
            raise _error_for(response.status_code, response.text, response.headers)
        decoded = response.json()
        return decoded if isinstance(decoded, dict) else {}

    async def watch(
        self,
        path: str,
        params: Mapping[str, str],
        on_event: Callable[[dict[str, Any]], Awaitable[None] | None],
        on_open: Callable[[], None] = lambda: None,
    ) -> None:
        """Stream a watch, calling `on_event` per event until the server ends it.

        The caller bounds the whole stream with a cancel scope; the server is
        asked to end it earlier (`timeoutSeconds`).
        """
        try:
            async with self._http.stream(
                "GET", path, params={**params, "watch": "1"}, headers=self._headers()
            ) as response:
                if response.status_code >= 300:
                    body = (await response.aread()).decode(errors="replace")
                    raise _error_for(response.status_code, body, response.headers)
                on_open()
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    result = on_event(json.loads(line))
                    if result is not None:
                        await result
        except httpx.HTTPError as exc:
            raise KubeRetryable(f"watch {path}: {exc.__class__.__name__}: {exc}") from exc
        except ValueError as exc:
            raise KubeRetryable(f"watch {path}: undecodable event: {exc}") from exc
