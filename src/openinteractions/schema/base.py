"""Shared base for every wire model.

Input is parsed strictly for unknown fields (a misspelt field must be a 400, never silently ignored) and
output is dumped without ``None`` fields, so an object on the wire carries exactly what was set.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict of this object as it goes on the wire."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def wire_json(self) -> str:
        return self.model_dump_json(exclude_none=True, by_alias=True)

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True, by_alias=True).encode()


class OpenRecord(WireModel):
    """A result record whose declared fields are all optional and which may carry more (tool output)."""

    model_config = ConfigDict(extra="allow")


class QueryArguments(WireModel):
    """The queries of a search call step (google_search's, google_maps')."""

    queries: list[str] | None = None
