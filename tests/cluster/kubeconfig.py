"""Kubeconfig files for the harness's clients: admin (client certificate) and service
accounts (bearer token)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: Path,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    """Write a one-cluster, one-user kubeconfig with absolute file paths; return `path`."""
    credentials: dict[str, str] = {}
    if client_cert is not None and client_key is not None:
        credentials = {
            "client-certificate": str(Path(client_cert).resolve()),
            "client-key": str(Path(client_key).resolve()),
        }
    if token is not None:
        credentials["token"] = token
    if not credentials:
        raise ValueError("a kubeconfig needs a client certificate and key, or a token")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "edge-sched-e2e",
                "cluster": {"server": server, "certificate-authority": str(Path(ca_file).resolve())},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {"name": user, "context": {"cluster": "edge-sched-e2e", "user": user, "namespace": namespace}}
        ],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Tokens and key paths: readable by the owner only.
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
