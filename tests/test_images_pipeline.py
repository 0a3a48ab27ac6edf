"""A real diffusers pipeline, tiny and with random weights, built here from configs (nothing downloaded), and the
diffusers image backend driven directly with it."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from openinteractions.backends.images import ImageRequest
from openinteractions.backends.images.diffusers import DiffusersBackend, DiffusersOptions

_BYTES = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]


def _byte_alphabet() -> list[str]:
    """CLIP's byte-level alphabet: every byte as a printable character (GPT-2's table)."""
    chars, extra = list(_BYTES), 0
    for b in range(256):
        if b not in _BYTES:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer whose vocabulary is the byte alphabet (each character alone and word-final) and a few
    merges: enough to tokenize any prompt, built from files written here."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in alphabet:
        vocab.setdefault(char, len(vocab))
    for char in alphabet:
        vocab.setdefault(char + "</w>", len(vocab))
    merges = ["#version: 0.2", "t h", "th e</w>", "a n", "an d</w>"]
    for merge in merges[1:]:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")


def build_tiny_pipeline(folder: Path, sample_size: int = 32) -> Path:
    """A StableDiffusionPipeline as diffusers' own tests build theirs: a two-level UNet and VAE with a handful
    of channels, a three-layer CLIP text encoder, random weights (seeded), saved with save_pretrained."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=sample_size, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=2,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )  # fmt: skip
    text_config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=64, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=3, vocab_size=1000, max_position_embeddings=77,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    write_tokenizer(folder / "_tokenizer")
    tokenizer = CLIPTokenizer(
        str(folder / "_tokenizer" / "vocab.json"), str(folder / "_tokenizer" / "merges.txt"), model_max_length=77
    )
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_config), tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )  # fmt: skip
    target = folder / "tiny-sd"
    pipeline.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("diffusers"))


def _backend(path: Path, **options: object) -> DiffusersBackend:
    return DiffusersBackend(DiffusersOptions.model_validate({"path": path, "steps": 2, **options}))


def test_the_pipeline_draws_a_png_of_the_size_asked(tiny_pipeline: Path) -> None:
    from PIL import Image

    backend = _backend(tiny_pipeline)
    try:
        image = asyncio.run(backend.generate(ImageRequest("a gladiator in the arena", 48, 32, "image/png", seed=1)))
    finally:
        asyncio.run(backend.aclose())
    assert image.mime_type == "image/png"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(image.data)) as decoded:
        decoded.load()
        assert decoded.size == (48, 32)


def test_the_same_seed_draws_the_same_image(tiny_pipeline: Path) -> None:
    backend = _backend(tiny_pipeline)
    try:
        first, second = (
            asyncio.run(backend.generate(ImageRequest("the Colosseum at dusk", 32, 32, "image/jpeg", seed=7)))
            for _ in range(2)
        )
    finally:
        asyncio.run(backend.aclose())
    assert first.data[:3] == b"\xff\xd8\xff"
    assert first.data == second.data


def test_a_folder_that_is_not_a_pipeline_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=str(tmp_path)):
        _backend(tmp_path)
