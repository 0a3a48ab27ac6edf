"""Tiny multimodal projector GGUFs with random weights, the way llama.cpp's libmtmd loads them
(tools/mtmd/clip.cpp), for SmolLM2-135M: nothing is downloaded.

- ``mlp``: LLaVA's. A CLIP vision tower (class embedding, pre-norm) over 8x8 patches of a 32x32 image, then a
  two-layer MLP: 16 embeddings an image.
- ``gemma3``: Gemma 3's. A SigLIP tower over 4x4 patches of a 64x64 image, pooled 4x4, RMS-normed and projected:
  16 embeddings, which llama.cpp decodes with non-causal attention, all in one batch.
- ``idefics3``: SmolVLM's. A SigLIP tower over 8x8 patches of 32x32 tiles, pixel-shuffled by 2, projected: 4
  embeddings a tile; a larger image is cut into tiles plus an overview, with text between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import gguf
import numpy as np

SMOLLM2_EMBEDDING = 576  # SmolLM2-135M's hidden size: the projector's output must match the text model's
Kind = Literal["mlp", "gemma3", "idefics3"]
IMAGE_TOKENS = {"mlp": 16, "gemma3": 16, "idefics3": 4}  # an image (a tile, for idefics3) as embeddings
_GEOMETRY = {"mlp": (32, 8), "gemma3": (64, 4), "idefics3": (32, 8)}  # image size, patch size


def write_projector(path: Path, kind: Kind = "mlp", text_embedding: int = SMOLLM2_EMBEDDING, seed: int = 0) -> Path:
    width, hidden, blocks = 16, 32, 2
    image_size, patch_size = _GEOMETRY[kind]
    patches = (image_size // patch_size) ** 2
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch="clip")
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(kind)
    writer.add_vision_image_size(image_size)
    writer.add_vision_patch_size(patch_size)
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

    random("v.patch_embd.weight", width, 3, patch_size, patch_size, dtype=np.float16)
    if kind == "mlp":
        random("v.class_embd", width)
        norm("v.pre_ln", width)
    random("v.position_embd.weight", patches + (kind == "mlp"), width)
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
    if kind == "mlp":
        random("mm.0.weight", hidden, width)
        random("mm.0.bias", hidden)
        random("mm.2.weight", text_embedding, hidden)
        random("mm.2.bias", text_embedding)
    else:
        norm("v.post_ln", width)
    if kind == "gemma3":
        writer.add_tensor("mm.soft_emb_norm.weight", np.ones(width, np.float32))
        random("mm.input_projection.weight", width, text_embedding)
    if kind == "idefics3":
        writer.add_vision_projector_scale_factor(2)
        writer.add_vision_preproc_image_size(64)  # the longest edge an image is resized to before tiling
        random("mm.model.fc.weight", text_embedding, width * 4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
