"""A tiny multimodal projector GGUF with random weights, the way llama.cpp's libmtmd loads one (tools/mtmd/clip.cpp):
a CLIP vision tower of two blocks over 8x8 patches of a 32x32 image, then LLaVA's two-layer MLP projector ("mlp")
into the text model's embedding size. An image becomes (32 / 8)² = 16 embeddings; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

IMAGE_SIZE = 32
PATCH_SIZE = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
SMOLLM2_EMBEDDING = 576  # SmolLM2-135M's hidden size: the projector's output must match the text model's


def write_projector(path: Path, text_embedding: int = SMOLLM2_EMBEDDING, seed: int = 0) -> Path:
    width, hidden, blocks = 16, 32, 2
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch="clip")
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type("mlp")
    writer.add_vision_image_size(IMAGE_SIZE)
    writer.add_vision_patch_size(PATCH_SIZE)
    writer.add_vision_embedding_length(width)
    writer.add_vision_feed_forward_length(hidden)
    writer.add_vision_block_count(blocks)
    writer.add_vision_head_count(2)
    writer.add_vision_attention_layernorm_eps(1e-5)
    writer.add_vision_projection_dim(text_embedding)
    writer.add_vision_image_mean([0.5, 0.5, 0.5])
    writer.add_vision_image_std([0.5, 0.5, 0.5])

    def random(name: str, *shape: int, scale: float = 0.5, dtype: type = np.float32) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * scale).astype(dtype))  # numpy order: ggml's reversed

    def norm(name: str, size: int) -> None:
        writer.add_tensor(f"{name}.weight", np.ones(size, np.float32))
        random(f"{name}.bias", size)

    random("v.patch_embd.weight", width, 3, PATCH_SIZE, PATCH_SIZE, dtype=np.float16)
    random("v.class_embd", width)
    random("v.position_embd.weight", IMAGE_TOKENS + 1, width)
    norm("v.pre_ln", width)
    for block in range(blocks):
        prefix = f"v.blk.{block}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            random(f"{prefix}{name}.weight", width, width)
            random(f"{prefix}{name}.bias", width)
        norm(f"{prefix}ln1", width)
        norm(f"{prefix}ln2", width)
        random(f"{prefix}ffn_up.weight", hidden, width)
        random(f"{prefix}ffn_up.bias", hidden)
        random(f"{prefix}ffn_down.weight", width, hidden)
        random(f"{prefix}ffn_down.bias", width)
    random("mm.0.weight", hidden, width)
    random("mm.0.bias", hidden)
    random("mm.2.weight", text_embedding, hidden)
    random("mm.2.bias", text_embedding)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
