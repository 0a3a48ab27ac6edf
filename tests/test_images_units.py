"""The pieces of interleaving without a server: the parts' reader, the sizes and formats of images, the OpenAI
images backend's answers and failures."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openinteractions.backends.base import BackendError
from openinteractions.backends.images import ImageRequest
from openinteractions.backends.images.openai import OpenAIImagesBackend, OpenAIImagesOptions
from openinteractions.backends.images.sizing import ImageLimits, ImageOptionError, image_shape
from openinteractions.engine.parts import Image, PartsReader, Piece, Text
from openinteractions.schema.generation import ImageResponseFormat

PARTS = [{"text": 'He said "ave" \\ and left.\n'}, {"image": "a gladiator, ünïcode"}, {"text": "Then 🦁."}]


def merged(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        if out and isinstance(piece, Text) and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + piece.text)
        elif not (isinstance(piece, Text) and not piece.text):
            out.append(piece)
    return out


def read(chunks: list[str]) -> list[Piece]:
    reader = PartsReader()
    pieces = [piece for chunk in chunks for piece in reader.feed(chunk)]
    return merged(pieces + reader.close())


@given(st.lists(st.integers(min_value=1, max_value=len(json.dumps({"parts": PARTS}))), max_size=12))
def test_any_chunking_reads_the_same_parts_in_order(cuts: list[int]) -> None:
    document = json.dumps({"parts": PARTS}, ensure_ascii=False)
    bounds = sorted({0, len(document), *(c for c in cuts if c < len(document))})
    chunks = [document[a:b] for a, b in itertools.pairwise(bounds)]
    assert read(chunks) == [Text(PARTS[0]["text"]), Image(PARTS[1]["image"]), Text(PARTS[2]["text"])]


def test_text_streams_before_its_part_ends_and_an_image_waits_for_its_description() -> None:
    reader = PartsReader()
    assert reader.feed('{"parts": [{"text": "Hel') == [Text("Hel")]
    assert reader.feed('lo"}, {"image": "a li') == [Text("lo")]
    assert reader.feed('on"}, {"te') == [Image("a lion")]


def test_prose_streams_as_text_and_a_cut_off_image_is_not_drawn() -> None:
    assert read(["  Once upon", " a time"]) == [Text("Once upon a time")]
    assert read(['{"parts": [{"text": "A"}, {"image": "half a desc']) == [Text("A")]


def limits(**overrides: Any) -> ImageLimits:
    return ImageLimits(**{"default_size": 1024, "max_size": 2048, "multiple": 64, **overrides})


@pytest.mark.parametrize(
    "config, fmt, size",
    [
        (None, None, (1024, 1024, "image/jpeg")),
        ({"aspect_ratio": "16:9"}, None, (1344, 768, "image/jpeg")),
        ({"image_size": "512", "aspect_ratio": "9:16"}, None, (384, 704, "image/jpeg")),
        (None, ImageResponseFormat(aspect_ratio="21:9", mime_type="image/png"), (1536, 640, "image/png")),
        ({"aspect_ratio": "1:1"}, ImageResponseFormat(aspect_ratio="1:1", image_size="2K"), (2048, 2048, "image/jpeg")),
    ],
)
def test_sizes_keep_the_area_of_their_square_at_the_backend_s_multiple(
    config: dict[str, Any] | None, fmt: ImageResponseFormat | None, size: tuple[int, int, str]
) -> None:
    shape = image_shape(limits(), config, fmt)
    assert (shape.width, shape.height, shape.mime_type) == size


def test_an_upstream_s_fixed_sizes_are_matched_by_aspect_ratio() -> None:
    fixed = limits(sizes=((1024, 1024), (1536, 1024), (1024, 1536)))
    assert image_shape(fixed, {"aspect_ratio": "3:2"}, None).width == 1536
    assert image_shape(fixed, {"aspect_ratio": "2:3", "image_size": "512"}, None).height == 1536
    with pytest.raises(ImageOptionError, match=r"'generation_config.image_config.aspect_ratio': .* draws only"):
        image_shape(fixed, {"aspect_ratio": "16:9"}, None)


def test_a_size_past_the_backend_s_largest_names_the_field() -> None:
    with pytest.raises(ImageOptionError, match=r"'response_format.image_size' asks for 4096x4096 pixels"):
        image_shape(limits(), None, ImageResponseFormat(image_size="4K"))


def png(width: int, height: int) -> bytes:
    from PIL import Image as Pil

    out = io.BytesIO()
    Pil.new("RGB", (width, height), (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


def backend(handler: Any, **options: Any) -> OpenAIImagesBackend:
    parsed = OpenAIImagesOptions.model_validate(
        {"base_url": "http://images.test/v1", "api_key": "sk-secret-9", **options}
    )
    return OpenAIImagesBackend(parsed, transport=httpx.MockTransport(handler))


def draw(images: OpenAIImagesBackend, mime_type: str = "image/png") -> Any:
    async def go() -> Any:
        try:
            return await images.generate(ImageRequest("a lion", 64, 64, mime_type))
        finally:
            await images.aclose()

    return asyncio.run(go())


def test_the_images_api_is_asked_for_b64_json_and_its_png_is_re_encoded_as_asked() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        assert request.headers["authorization"] == "Bearer sk-secret-9"
        return httpx.Response(200, json={"data": [{"b64_json": base64.b64encode(png(64, 64)).decode()}]})

    image = draw(backend(handler, extra_body={"quality": "low"}), "image/jpeg")
    assert image.mime_type == "image/jpeg" and image.data.startswith(b"\xff\xd8\xff")
    assert sent == [{"quality": "low", "prompt": "a lion", "n": 1, "size": "64x64", "response_format": "b64_json"}]


@pytest.mark.parametrize(
    "response, message",
    [
        (httpx.Response(500, text="out of memory for sk-secret-9"), "answered 500: out of memory for [redacted]"),
        (httpx.Response(200, json={"data": []}), "no data[0].b64_json image"),
        (httpx.Response(200, json={"data": [{"b64_json": base64.b64encode(b"GIF89a").decode()}]}), "not a PNG"),
    ],
)
def test_an_upstream_s_failure_is_a_backend_error_without_its_key(response: httpx.Response, message: str) -> None:
    with pytest.raises(BackendError, match=message.replace("[", r"\[").replace("]", r"\]")):
        draw(backend(lambda request: response))


def test_extra_body_may_not_set_what_the_request_sets() -> None:
    with pytest.raises(ValueError, match="extra_body may not set prompt, size"):
        OpenAIImagesOptions.model_validate({"base_url": "http://x/v1", "extra_body": {"size": "1x1", "prompt": "p"}})
