"""Fixtures for the end-to-end tests: one real control plane per test session.

Every test under tests/e2e is marked `e2e`. The control plane is never skipped: if the
binaries cannot be built or a component does not start, the fixture errors with the
reason (build output or log tail), so CI is red instead of silently green.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import ControlPlane, kube_bin_dir

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kube_bin() -> Path:
    """The pinned control-plane programs (built on first use; errors, never skips)."""
    return kube_bin_dir()


@pytest.fixture(scope="session")
def control_plane(kube_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager + kwok, shared by the session.

    Tests add their own nodes, namespaces and kube-schedulers, and remove the nodes they
    added when done, so one module's nodes do not change another's placements.
    """
    cp = ControlPlane.start(tmp_path_factory.mktemp("control-plane"), kube_bin)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """On failure of a test that used the control plane, attach every component's log tail."""
    report: pytest.TestReport = yield
    if report.failed:
        cp = getattr(item, "funcargs", {}).get("control_plane")
        if isinstance(cp, ControlPlane):
            report.sections.append(("control plane logs (tail)", cp.logs_tail()))
    return report
