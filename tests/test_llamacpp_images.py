"""Images on the embedded backend: SmolLM2-135M served with a multimodal projector (``mmproj``), through
google-genai. The projectors are tiny random-weight GGUFs the test writes (mmproj.py): LLaVA's MLP and Gemma 3's
(whose images llama.cpp decodes with non-causal attention). What is asserted is that the image reaches the model
as embeddings, not what a 135M model says about it: the prompt grows by the image's tokens, greedy decoding
answers differently for different images and the same for the same one (so no cached prefix stands in for
another image), concurrent images stay apart, a chain reuses the cached image; and the 400s: an image the model
cannot decode, a projector whose image markup the model's vocabulary lacks (SmolVLM's, made for its own
vocabulary), no projector at all.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai._interactions import BadRequestError

from live import LiveServer
from mmproj import IMAGE_TOKENS, Kind, write_projector
from openinteractions.backends.llamacpp.engine import (
    MIN_LAST_CHUNK,
    Embedded,
    Job,
    Sampling,
    _outside_spans,
    _text_share,
)

MODELS: dict[str, Kind] = {"llava": "mlp", "gemma3": "gemma3", "smolvlm": "idefics3"}
SEEING = ["llava", "gemma3"]
# What else an image adds to SmolLM2's prompt: Gemma 3 marks it with "<start_of_image>" and "<end_of_image>", plain
# text of 7 tokens each in SmolLM2's vocabulary; LLaVA adds nothing.
MARKUP = {"llava": 0, "gemma3": 14}
QUESTION = "Describe this image."
GREEDY = {"temperature": 0, "max_output_tokens": 12}


def png(width: int, height: int, pixel: Any) -> bytes:
    """An RGB PNG whose pixel (x, y) is ``pixel(x, y)``, written with zlib alone."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


CHECKERS = png(32, 32, lambda x, y: (255, 255, 255) if (x // 4 + y // 4) % 2 else (0, 0, 0))
GRADIENT = png(24, 24, lambda x, y: (x * 10, y * 10, 255 - x * 10))


def image(data: bytes) -> dict[str, str]:
    return {"type": "image", "data": base64.b64encode(data).decode(), "mime_type": "image/png"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("llamacpp-images")
    common = {"backend": "llamacpp", "parallel": 2, "context_size": 1024, "threads": 2}
    sections = {
        f"models.{name}": {**common, "mmproj": str(write_projector(workdir / f"mmproj-{kind}.gguf", kind))}
        for name, kind in MODELS.items()
    }
    live = LiveServer(workdir, {**sections, "models.reader": common}).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": server.url})


def answer(client: genai.Client, *parts: dict[str, Any], model: str = "llava", **fields: Any) -> Any:
    interaction = client.interactions.create(
        model=model, input=[{"type": "text", "text": QUESTION}, *parts], generation_config=GREEDY, **fields
    )
    assert interaction.status in ("completed", "incomplete"), interaction  # incomplete: max_output_tokens
    return interaction


def text(interaction: Any) -> str:
    return "".join(c.text or "" for step in interaction.steps or [] for c in getattr(step, "content", None) or [])


@pytest.mark.parametrize("model", SEEING)
def test_an_image_adds_its_embeddings_to_the_prompt(client: genai.Client, model: str) -> None:
    alone = answer(client, model=model)
    seen = answer(client, image(CHECKERS), model=model)
    per_image = IMAGE_TOKENS[MODELS[model]] + MARKUP[model]
    assert seen.usage.total_input_tokens == alone.usage.total_input_tokens + per_image
    two = answer(client, image(CHECKERS), image(GRADIENT), model=model)
    assert two.usage.total_input_tokens == alone.usage.total_input_tokens + 2 * per_image
    # The images' own tokens (their markup is text) are the image modality's; without an image, all are text.
    images = 2 * IMAGE_TOKENS[MODELS[model]]
    by_modality = {m.modality: m.tokens for m in two.usage.input_tokens_by_modality or []}
    assert by_modality == {"text": two.usage.total_input_tokens - images, "image": images}
    assert [(m.modality, m.tokens) for m in alone.usage.input_tokens_by_modality or []] == [
        ("text", alone.usage.total_input_tokens)
    ]


# Long enough (over the engine's REUSE_MIN_TOKENS) that a request takes the sequence holding the previous one.
SYSTEM = " ".join(["You describe pictures for people who cannot see them, plainly and in a few words."] * 5)


@pytest.mark.parametrize("model", SEEING)
def test_the_model_sees_which_image_it_was_given(client: genai.Client, model: str) -> None:
    # Greedy decoding over the same text: only the embeddings differ. Each request continues the sequence of the
    # one before, from the cached prefix up to its image: an engine that took one image's cached positions for
    # another's would repeat the previous answer.
    gradient, checkers, again = (
        text(answer(client, image(data), model=model, system_instruction=SYSTEM))
        for data in (GRADIENT, CHECKERS, GRADIENT)
    )
    assert gradient and checkers and gradient != checkers
    assert again == gradient


def test_images_of_concurrent_requests_stay_apart(client: genai.Client) -> None:
    alone = [text(answer(client, image(data))) for data in (GRADIENT, CHECKERS)]

    async def ask(data: bytes) -> str:
        body = {"model": "llava", "input": [{"type": "text", "text": QUESTION}, image(data)]}
        return text(await client.aio.interactions.create(**body, generation_config=GREEDY))

    async def both() -> list[str]:
        return list(await asyncio.gather(ask(GRADIENT), ask(CHECKERS)))  # prefilled side by side, in one batch

    together = asyncio.run(both())
    # Prompt tokens evaluated in one batch with another request's may get slightly other logits (docs/backends.md,
    # Determinism), so only the answers' first words, far apart here, are compared.
    assert together[0] != together[1]
    assert [reply.split()[0] for reply in together] == [reply.split()[0] for reply in alone]


def test_prompted_reasoning_sees_the_image_too(client: genai.Client) -> None:
    config = {**GREEDY, "thinking_level": "low", "thinking_summaries": "auto"}

    def thought(data: bytes) -> str:
        question = [{"type": "text", "text": QUESTION}, image(data)]
        interaction = client.interactions.create(model="llava", input=question, generation_config=config)
        assert interaction.status in ("completed", "incomplete")
        summaries = [step.summary for step in interaction.steps if step.type == "thought"]
        return "".join(part.text for summary in summaries for part in summary or [])

    gradient, checkers = thought(GRADIENT), thought(CHECKERS)  # the reasoning pass's own prompt, images included
    assert gradient and checkers and gradient != checkers


@pytest.mark.parametrize("model", SEEING)
def test_a_chain_reuses_the_cached_image(client: genai.Client, model: str) -> None:
    first = answer(client, image(GRADIENT), model=model)
    second = client.interactions.create(
        model=model, input="And now?", previous_interaction_id=first.id, generation_config=GREEDY
    )
    assert second.status in ("completed", "incomplete")
    # The earlier turn, its image included, comes from the KV cache (all of it but the template's last tokens).
    assert second.usage.total_cached_tokens >= first.usage.total_input_tokens - 4
    assert second.usage.total_input_tokens > first.usage.total_input_tokens


def test_an_image_it_cannot_decode_is_a_400_naming_it(client: genai.Client) -> None:
    with pytest.raises(BadRequestError) as caught:
        answer(
            client, {"type": "image", "data": base64.b64encode(b"RIFF0000WEBPVP8 ").decode(), "mime_type": "image/webp"}
        )
    assert caught.value.status_code == 400
    assert "image 0 of the conversation (image/webp) could not be decoded" in str(caught.value)


def test_a_projector_made_for_another_vocabulary_is_a_400_that_says_so(client: genai.Client) -> None:
    with pytest.raises(BadRequestError) as caught:
        answer(client, image(GRADIENT), model="smolvlm")  # its tiles are marked with SmolVLM's own tokens
    assert caught.value.status_code == 400 and "FAILED_PRECONDITION" in str(caught.value)
    assert "tokens this model's vocabulary lacks" in str(caught.value)


def test_an_image_in_a_function_result_is_a_400_not_base64_text(client: genai.Client) -> None:
    look = {"type": "function", "name": "look", "description": "Take a picture", "parameters": {"type": "object"}}
    first = client.interactions.create(
        model="llava", tools=[look], input="Take a picture.", generation_config={"tool_choice": "any", "seed": 1}
    )
    call = first.steps[-1]
    assert first.status == "requires_action" and call.type == "function_call"
    result = {"type": "function_result", "name": call.name, "call_id": call.id, "result": [image(GRADIENT)]}
    with pytest.raises(BadRequestError) as caught:
        client.interactions.create(model="llava", previous_interaction_id=first.id, input=[result])
    assert "reads images in user input only, not in a function result" in str(caught.value)


def test_without_a_projector_an_image_is_a_400_that_says_why(client: genai.Client) -> None:
    with pytest.raises(BadRequestError) as caught:
        client.interactions.create(model="reader", input=[{"type": "text", "text": QUESTION}, image(CHECKERS)])
    assert caught.value.status_code == 400
    assert "image input (input step 0, content 1)" in str(caught.value)
    assert "it takes text" in str(caught.value) and "mmproj" in str(caught.value)


def test_a_projector_for_another_model_is_refused_at_startup(tmp_path: Path) -> None:
    from openinteractions.backends.llamacpp import create

    projector = write_projector(tmp_path / "mmproj-wide.gguf", text_embedding=64)
    with pytest.raises(ValueError, match="could not load the projector"):
        create({"mmproj": str(projector), "parallel": 1, "context_size": 256}, tmp_path)


# ---- the engine's bookkeeping of spans of embeddings ---------------------------------------------------------


@dataclass
class Span:
    n_tokens: int

    def decode(self, ctx: Any, position: int, seq: int, batch_size: int) -> int:
        return 0


def test_a_cached_prefix_never_ends_inside_an_image() -> None:
    media: dict[int, Embedded] = {3: Span(4), 10: Span(2)}
    assert [_outside_spans(keep, media) for keep in range(14)] == [0, 1, 2, 3, 3, 3, 3, 7, 8, 9, 10, 10, 12, 13]


def test_the_prefill_stops_its_text_at_the_next_image() -> None:
    job = Job([1, 2, 3, -1, -1, -1, 4, 5, 6, 7, 8, 9], Sampling(), 1, lambda event: None, media={3: Span(3)})
    job.pending = job.prompt[1:]
    assert _text_share(1, job, 100) == 2  # up to the image, whatever the share
    assert _text_share(1, job, 1) == 1
    job.pending = job.prompt[6:]
    assert _text_share(6, job, 100) == 6  # after the last image: as a text prompt's last chunks
    assert _text_share(6, job, 5) == 6 - MIN_LAST_CHUNK
