"""The error tree shared across layers.

Adapters map transport and protocol failures onto these so that callers decide
by kind (retry, report, give up) and never by parsing messages.
"""

from __future__ import annotations


class EdgeSchedError(Exception):
    """Base of every error edge-sched raises on purpose."""


class KubeError(EdgeSchedError):
    """The API server refused a request; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFound(KubeError):
    """404: the object does not exist."""


class KubeConflict(KubeError):
    """409: already exists, or a precondition (UID, resourceVersion) failed."""


class KubeGone(KubeError):
    """410: the watch's resourceVersion is too old; list again."""


class KubeRetryable(KubeError):
    """No answer, 429 or 5xx: worth trying again after a backoff."""

    def __init__(self, message: str, status: int = 0, retry_after_s: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after_s = retry_after_s


class DecodeError(EdgeSchedError):
    """A datagram or message does not follow its wire format.

    `reason` is one of a small fixed set of words (a metrics label: bounded cardinality);
    the message says where and why.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
