"""Process-wide logging set-up: plain text for people, JSON lines for collectors."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request access lines would drown the decisions worth reading.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    # So would one INFO line per Kubernetes or Prometheus call (every poll, bind and event);
    # LOG_LEVEL=DEBUG shows them.
    for client in ("httpx", "httpcore"):
        logging.getLogger(client).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
