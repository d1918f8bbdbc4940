"""JSON request bodies and error answers shared by every HTTP blueprint.

Bad input always gets a 4xx with a message naming the problem; nothing a
client sends can produce a 500 or a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request


class BadRequest(ValueError):
    """The request is unusable; the message names the field and the reason."""


def json_bytes(payload: Any) -> bytes:
    # allow_nan=False: NaN or Infinity must never reach a client as invalid JSON.
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json_bytes(payload), status=status, content_type="application/json")


async def read_json() -> Any:
    """The request body decoded as JSON, or BadRequest saying why not."""
    raw: bytes = await request.get_data(as_text=False)  # type: ignore[assignment]  # bytes when as_text=False
    return decode_json_body(raw)


def decode_json_body(raw: bytes) -> Any:
    """`raw` decoded as UTF-8 JSON, or BadRequest saying why not.

    Total over all input: json.loads also raises RecursionError (nesting deeper than the
    interpreter's stack) and a plain ValueError (an integer over Python's 4,300-digit
    limit); both are the client's problem, not a 500.
    """
    if not raw:
        raise BadRequest("body: empty; expected a JSON object")
    try:
        # Decode explicitly: json.loads(bytes) would also guess UTF-16/32.
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    except ValueError:  # after JSONDecodeError, its subclass: only the digit limit is left
        raise BadRequest("body: invalid JSON (a number has more than 4300 digits)") from None
