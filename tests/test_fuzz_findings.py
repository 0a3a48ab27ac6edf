"""What the fuzzer (tests/test_fuzz.py) found, each pinned by a plain request."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import SEED_MODEL
from live import LiveServer


def post(server: LiveServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with server.http() as http:
        response = http.post("/v1beta/interactions", json={"model": SEED_MODEL, **body})
    return response.status_code, response.json()


@pytest.mark.parametrize("kind", [{}, [], 5, True])
@pytest.mark.parametrize("shape", ["list", "one", "turn"])
def test_an_input_type_that_is_not_a_string_is_a_400(server: LiveServer, kind: Any, shape: str) -> None:
    """An input item's ``type`` that is an object or array was looked up in a set of type names: a 500
    (unhashable), and the connection closed under the next request on it."""
    item = {"role": "user", "content": "hi", "type": kind} if shape == "turn" else {"type": kind}
    status, body = post(server, {"input": item if shape == "one" else [item]})
    assert status == 400, body
    assert body["error"]["message"].startswith("input[0].type must be a string"), body


@pytest.mark.parametrize("version", ["v1", "v1beta", "v2alpha3", "v%D9%A1", "v1%0A", "v1beta%0A", "v%F0%9D%9F%8F"])
def test_a_version_segment_is_ascii_digits_and_nothing_after(server: LiveServer, version: str) -> None:
    """`v<digits>` with an optional alpha/beta<digits>, as the document's pattern says: '\\d' also took
    Arabic-Indic and mathematical digits, and '$' a trailing newline (/v1%0A/models was served)."""
    with server.http() as http:
        status = http.get(f"/{version}/models").status_code
    assert status == (200 if version.isalnum() else 404)
