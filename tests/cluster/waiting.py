"""Polling with a deadline and a message that says what was awaited and why it failed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from tests.cluster.processes import Proc, ProcessExited

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold in time (an AssertionError: tests report it as a failure)."""


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.1,
    procs: Iterable[Proc] = (),
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    Exceptions from the predicate count as "not yet" (an API server that is still
    starting refuses connections); the last one is quoted in the timeout message.

    Args:
        predicate: no-argument callable.
        timeout_s: give up after this many seconds.
        what: what is awaited, for the message ("pod web-1 Running").
        interval_s: pause between calls.
        procs: processes that must stay alive meanwhile; if one exits, fail at once
            with its log tail instead of waiting out the timeout.

    Raises:
        WaitTimeout: the predicate stayed falsy; the message names `what`, the last
            value or error, and the log tails of `procs`.
        ProcessExited: one of `procs` exited.
    """
    procs = list(procs)
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        for proc in procs:
            proc.check_alive()
        try:
            value = predicate()
        except ProcessExited:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet", see docstring
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout_s:g}s waiting for {what}; last result: {last!r}"
            for proc in procs:
                msg += f"\n--- last lines of {proc.log_path}:\n{proc.log_tail(20)}"
            raise WaitTimeout(msg)
        time.sleep(interval_s)
