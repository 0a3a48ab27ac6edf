"""Any OpenAI-compatible images API: ``POST {base_url}/images/generations`` with ``response_format: b64_json``
(LocalAI, stable-diffusion.cpp's server, vLLM-Omni, OpenAI itself).

The upstream is reached through the egress, like the ``openai`` text backend's: its origin and nothing else.
An image in another format than the one asked for is re-encoded (Pillow).
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, ValidationError, field_validator, model_validator

from ...egress import Egress, OriginPolicy, Refused
from ..base import BackendError
from ..openai.options import UpstreamKey, check_extra_body
from . import GeneratedImage, ImageRequest
from .encoding import convert, sniff
from .sizing import MIME_TYPES, ImageLimits

_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")
_RESERVED = frozenset({"prompt", "model", "n", "size", "response_format"})
_ERROR_BODY = 2000


class OpenAIImagesOptions(UpstreamKey):
    base_url: str  # the API root, ending with /v1
    model: str | None = None  # sent as "model" when set
    # The sizes the upstream draws ("1024x1024", "1536x1024", ...); empty: any width x height it is sent.
    sizes: list[str] = Field(default_factory=list)
    default_size: int = Field(default=1024, ge=8)
    max_size: int = Field(default=2048, ge=8)
    multiple: int = Field(default=64, ge=1)
    mime_type: str = "image/png"  # when the request names none
    extra_body: dict[str, Any] = Field(default_factory=dict)  # more fields, sent as they are (quality, steps...)
    connect_timeout: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=300.0, gt=0)  # for the whole answer: an image takes a while

    @field_validator("base_url")
    @classmethod
    def _url(cls, raw: str) -> str:
        url = httpx.URL(raw)
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise ValueError(f"{raw!r} is not an http(s) URL without credentials")
        return str(url).rstrip("/")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[str]) -> list[str]:
        for size in sizes:
            if not _SIZE.fullmatch(size):
                raise ValueError(f"size {size!r} is not WIDTHxHEIGHT")
        return sizes

    @field_validator("extra_body")
    @classmethod
    def _extra(cls, body: dict[str, Any]) -> dict[str, Any]:
        return check_extra_body(body, _RESERVED)

    @model_validator(mode="after")
    def _check(self) -> OpenAIImagesOptions:
        if self.mime_type not in MIME_TYPES:
            raise ValueError(f"mime_type {self.mime_type!r} is not one of {', '.join(MIME_TYPES)}")
        return self

    def limits(self) -> ImageLimits:
        sizes = tuple((int(m[1]), int(m[2])) for m in (_SIZE.fullmatch(s) for s in self.sizes) if m)
        return ImageLimits(self.default_size, self.max_size, self.multiple, self.mime_type, sizes)


class OpenAIImagesBackend:
    def __init__(self, options: OpenAIImagesOptions, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.options = options
        self.limits = options.limits()
        key = options.key()
        self._key = key
        self._headers = {"authorization": f"Bearer {key}"} if key else {}
        self._url = f"{options.base_url}/images/generations"
        self.egress = Egress("upstream", OriginPolicy([options.base_url]))
        timeout = httpx.Timeout(options.timeout, connect=options.connect_timeout)
        self._client = self.egress.client(transport, timeout=timeout)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        body: dict[str, Any] = {**self.options.extra_body, "prompt": request.prompt, "n": 1}
        body["size"] = f"{request.width}x{request.height}"
        body["response_format"] = "b64_json"
        if self.options.model is not None:
            body["model"] = self.options.model
        try:
            response = await self._client.post(self._url, json=body, headers=self._headers)
        except (httpx.HTTPError, Refused) as exc:
            raise BackendError(f"the images upstream could not be reached: {self._redact(exc)}", "unavailable") from exc
        if response.status_code != 200:
            text = self._redact(response.text[:_ERROR_BODY])
            code = "unavailable" if response.status_code >= 500 or response.status_code == 429 else "internal"
            raise BackendError(f"the images upstream answered {response.status_code}: {text}", code)
        data = _image_bytes(response)
        kind = sniff(data)
        if kind is None:
            raise BackendError("the images upstream sent bytes that are not a PNG, JPEG or WebP image")
        if kind != request.mime_type:
            data = convert(data, request.mime_type)
        return GeneratedImage(data, request.mime_type)

    def _redact(self, value: object) -> str:
        text = str(value)
        return text.replace(self._key, "[redacted]") if self._key else text

    async def aclose(self) -> None:
        await self._client.aclose()


def _image_bytes(response: httpx.Response) -> bytes:
    try:
        encoded = response.json()["data"][0]["b64_json"]
        return base64.b64decode(encoded, validate=True)
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise BackendError(f"the images upstream's answer has no data[0].b64_json image: {exc}") from exc


def create(options: dict[str, Any], base_dir: Path) -> OpenAIImagesBackend:
    try:
        parsed = OpenAIImagesOptions.model_validate(options)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
        raise ValueError("openai images options: " + "; ".join(problems)) from None
    return OpenAIImagesBackend(parsed)
