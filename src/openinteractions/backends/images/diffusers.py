"""Local diffusers pipelines: ``DiffusionPipeline.from_pretrained(path, local_files_only=True)`` on CPU or GPU.

The pipeline runs in one worker thread of its own, one image at a time: a pipeline holds the whole device and
is not safe to call from two threads. A cancelled generation stops at its next denoising step.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..base import BackendError
from . import GeneratedImage, ImageRequest
from .encoding import encode
from .sizing import MIME_TYPES, ImageLimits


class DiffusersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path  # a folder written by save_pretrained (model_index.json and the components' folders)
    device: str = "auto"  # auto: cuda if torch sees a GPU, else cpu; or "cpu", "cuda", "cuda:1", "mps"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: float16 on a GPU, float32 on CPU
    steps: int = Field(default=25, ge=1, le=500)  # denoising steps per image
    guidance_scale: float | None = Field(default=None, ge=0)  # the pipeline's own default when unset
    negative_prompt: str | None = None
    default_size: int | None = Field(default=None, ge=8)  # unset: the pipeline's native size
    max_size: int = Field(default=2048, ge=8)  # the longest side a request may ask for
    mime_type: str = "image/jpeg"  # when the request names none

    def limits(self, native: int, multiple: int) -> ImageLimits:
        if self.mime_type not in MIME_TYPES:
            raise ValueError(f"mime_type {self.mime_type!r} is not one of {', '.join(MIME_TYPES)}")
        return ImageLimits(self.default_size or native, self.max_size, multiple, self.mime_type)


class DiffusersBackend:
    def __init__(self, options: DiffusersOptions) -> None:
        import torch
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # a server's log is no terminal

        if not (options.path / "model_index.json").is_file():
            raise ValueError(f"{options.path} is not a diffusers pipeline folder (it has no model_index.json)")
        device = options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = options.dtype if options.dtype != "auto" else ("float32" if device == "cpu" else "float16")
        self.options = options
        self._torch = torch
        self._device = device
        load: Any = DiffusionPipeline.from_pretrained  # untyped
        self.pipeline: Any = load(options.path, local_files_only=True, dtype=getattr(torch, dtype)).to(device)
        self.pipeline.set_progress_bar_config(disable=True)
        self.limits = options.limits(*_native_size(self.pipeline))
        self._stoppable = "callback_on_step_end" in inspect.signature(self.pipeline.__call__).parameters
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="diffusers")

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        stop = threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, self._draw, request, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        except BackendError:
            raise
        except Exception as exc:  # a pipeline's own failure (out of memory, a size it cannot draw)
            raise BackendError(f"the image pipeline failed: {type(exc).__name__}: {exc}") from exc

    def _draw(self, request: ImageRequest, stop: threading.Event) -> GeneratedImage:
        if stop.is_set():
            raise BackendError("cancelled", "cancelled")
        arguments: dict[str, Any] = {
            "prompt": request.prompt,
            "width": request.width,
            "height": request.height,
            "num_inference_steps": self.options.steps,
            "output_type": "pil",
        }
        if self.options.guidance_scale is not None:
            arguments["guidance_scale"] = self.options.guidance_scale
        if self.options.negative_prompt is not None:
            arguments["negative_prompt"] = self.options.negative_prompt
        if request.seed is not None:
            arguments["generator"] = self._torch.Generator(device="cpu").manual_seed(request.seed)
        if self._stoppable:
            arguments["callback_on_step_end"] = _stopper(stop)
        with self._torch.inference_mode():
            result = self.pipeline(**arguments)
        return GeneratedImage(encode(result.images[0], request.mime_type), request.mime_type)

    async def aclose(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


def _stopper(stop: threading.Event) -> Any:
    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if stop.is_set():
            pipeline._interrupt = True  # diffusers' own way out of the denoising loop
        return tensors

    return on_step_end


def _native_size(pipeline: Any) -> tuple[int, int]:
    """The pipeline's native image side and the multiple its sides must be: the VAE's scale factor times the
    UNet's downsampling (each level halves), or times 2 for a transformer's patches."""
    factor = int(getattr(pipeline, "vae_scale_factor", 8))
    denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
    config = getattr(denoiser, "config", None)
    sample = int(getattr(config, "sample_size", 0) or 64)
    levels = len(getattr(config, "block_out_channels", None) or ()) if getattr(pipeline, "unet", None) else 0
    multiple = factor * (2 ** (levels - 1) if levels else 2)
    return sample * factor, math.lcm(8, multiple)  # diffusers' pipelines check for multiples of 8


def create(options: dict[str, Any], base_dir: Path) -> DiffusersBackend:
    try:
        parsed = DiffusersOptions.model_validate(options)
    except ValidationError as exc:
        raise ValueError(f"diffusers options: {exc}") from exc
    if not parsed.path.is_absolute():
        parsed.path = base_dir / parsed.path
    return DiffusersBackend(parsed)
