"""Request bodies are decoded totally: every input is a value or a BadRequest naming why."""

from __future__ import annotations

import pytest

from edge_sched.adapters.http.bodies import BadRequest, decode_json_body


def test_a_json_object_decodes() -> None:
    assert decode_json_body(b'{"Pod": {"metadata": {"name": "p"}}}') == {"Pod": {"metadata": {"name": "p"}}}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "body: empty; expected a JSON object"),
        (b"\xff", "body: not UTF-8 (invalid start byte at byte 0)"),
        (b"{", "body: invalid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        # Found by tests/faults/test_malformed_http.py: these two were HTTP 500s.
        (b"[" * 100_000, "body: JSON nested too deeply"),
        (b'{"Pod": ' + b"1" * 5000 + b"}", "body: invalid JSON (a number has more than 4300 digits)"),
    ],
)
def test_bad_bodies_name_the_problem(raw: bytes, why: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_json_body(raw)
    assert str(info.value) == why
