"""Logging set-up (edge_sched/logs.py): the HTTP client's per-request lines stay out of INFO."""

from __future__ import annotations

import logging

import pytest

from edge_sched.logs import configure_logging


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("WARNING", False), ("DEBUG", True)])
def test_http_client_request_lines_only_at_debug(level: str, shown: bool) -> None:
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    try:
        configure_logging(level, "text")
        assert logging.getLogger("httpx").isEnabledFor(logging.INFO) is shown
        assert logging.getLogger("edge_sched").isEnabledFor(logging.INFO) is (level != "WARNING")
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        for name in ("httpx", "httpcore", "hypercorn.access"):
            logging.getLogger(name).setLevel(logging.NOTSET)
