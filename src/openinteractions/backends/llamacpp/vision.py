"""Images for a GGUF model served with a multimodal projector (llama.cpp's libmtmd, bound as ``mtmd_cpp``).

An image becomes pieces of the prompt: the text tokens its model puts around it (``<start_of_image>`` and the
like) and one or more slices of embeddings. mtmd tokenizes each image on its own, so an image the cache still
holds is not decoded and resized again in a later turn or tool round, and the rest of the prompt is tokenized
by the engine as any other. A slice stands in the prompt as ``n_tokens`` copies of a negative placeholder,
unique to that slice in this process: the engine's prefix cache compares token lists, and two prompts share a
slice's positions exactly when they hold the same slice. Its embeddings are computed (``encode``, the vision
encoder, the slow part) in a worker thread before the generation is queued, and decoded into the sequence by
the engine's thread (``decode``) when its prefill reaches them.

The engine knows nothing of images: it sees spans of placeholders and what decodes each (engine.Embedded).
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import itertools
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp as L

from ..base import BackendError

_CACHED_IMAGES = 8  # images whose slices (and, once encoded, embeddings) are kept between requests
_placeholders = itertools.count(1)  # never reused: a slice made again gets a new one (a cache miss, not a mix-up)


@dataclass(eq=False)
class ImageSlice:
    """One slice of an image's embeddings in a prompt (an image is one slice, or several for tiling models)."""

    projector: Projector
    chunk: int  # the mtmd_input_chunk (a copy this slice owns)
    n_tokens: int
    placeholder: int  # negative: never a token id
    whole: bool  # decoded with non-causal attention: all its tokens in one batch (Gemma 3's)
    embeddings: Any = field(default=None, repr=False)  # ctypes float array, n_tokens * n_embd, once encoded

    def decode(self, ctx: Any, position: int, seq: int, batch_size: int) -> int:
        """Into sequence ``seq`` of the llama context from ``position``; in the engine's thread. 0: done."""
        return self.projector.decode(self, ctx, position, seq, batch_size)


Piece = list[int] | ImageSlice  # what an image becomes: text tokens around it, and its slices


class Projector:
    """A multimodal projector GGUF loaded for the engine's model."""

    def __init__(self, path: Path, model: Any, threads: int, log_callback: Any) -> None:
        from llama_cpp import mtmd_cpp as M

        self._m = M
        self._log_callback = log_callback  # libmtmd keeps the pointer: the callback must outlive it
        if log_callback is not None:
            M.mtmd_helper_log_set(log_callback, ctypes.c_void_p(0))  # also sets libmtmd's own
        params = M.mtmd_context_params_default()
        params.n_threads = threads
        params.print_timings = False
        ctx = M.mtmd_init_from_file(str(path).encode(), model, params)
        if not ctx:
            raise ValueError(f"llama.cpp could not load the projector {path} for this model (its log says why)")
        self._ctx = ctx
        if not M.mtmd_support_vision(ctx):
            self.close()
            raise ValueError(f"the projector {path} reads no images (an audio projector is not supported yet)")
        if M.mtmd_decode_use_mrope(ctx):
            self.close()
            raise ValueError(
                f"the projector {path} places images with M-RoPE (Qwen2-VL and later), which the embedded engine "
                "does not do yet: serve that model with llama.cpp's server and the openai backend"
            )
        self.n_embd = int(L.llama_model_n_embd_inp(model))
        self._encoding = threading.Lock()  # an mtmd context encodes one image at a time
        self._images: OrderedDict[str, list[Piece]] = OrderedDict()

    def close(self) -> None:
        if self._ctx:
            self._m.mtmd_free(self._ctx)
            self._ctx = None

    # ---- prompts (the event loop's thread: prepare) ---------------------------------------------------

    def pieces(self, data: bytes, mime_type: str, where: str) -> list[Piece]:
        """What the image ``data`` becomes in a prompt; ``where`` names it in errors (a 400). Decoding and
        resizing an image reads nothing an encode changes, so it needs no lock (llama.cpp's server too tokenizes
        in its HTTP threads while its loop encodes)."""
        key = hashlib.sha256(data).hexdigest()
        cached = self._images.get(key)
        if cached is not None:
            self._images.move_to_end(key)
            return cached
        made = self._tokenize(data, mime_type, where)
        self._images[key] = made
        while len(self._images) > _CACHED_IMAGES:
            self._images.popitem(last=False)
        return made

    def _tokenize(self, data: bytes, mime_type: str, where: str) -> list[Piece]:
        M = self._m
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = M.mtmd_helper_bitmap_init_from_buf(self._ctx, buffer, len(data), False)
        if not bitmap:
            raise BackendError(
                f"{where} ({mime_type}) could not be decoded: llama.cpp reads PNG, JPEG, BMP and GIF images",
                "invalid_argument",
            )
        chunks = M.mtmd_input_chunks_init()
        try:
            marker = M.mtmd_default_marker()
            text = M.mtmd_input_text(marker, len(marker), False, True)
            bitmaps = (M.mtmd_bitmap_p_ctypes * 1)(bitmap)
            status = M.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1)
            if status != 0:
                message = f"{where} could not be prepared for the model (mtmd error {status})"
                raise BackendError(message, "invalid_argument")
            return [self._piece(M.mtmd_input_chunks_get(chunks, i)) for i in range(M.mtmd_input_chunks_size(chunks))]
        finally:
            M.mtmd_input_chunks_free(chunks)
            M.mtmd_bitmap_free(bitmap)

    def _piece(self, chunk: Any) -> Piece:
        M = self._m
        if M.mtmd_input_chunk_get_type(chunk) == M.MTMD_INPUT_CHUNK_TYPE_TEXT:
            count = ctypes.c_size_t()
            pointer = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            tokens = [int(pointer[i]) for i in range(count.value)] if pointer else []
            if any(token < 0 for token in tokens):  # a token of its markup that this vocabulary lacks
                raise BackendError(
                    "the projector marks images with tokens this model's vocabulary lacks: it was made for another "
                    "model (llamacpp mmproj)",
                    "failed_precondition",
                )
            return tokens
        own = M.mtmd_input_chunk_copy(chunk)
        placeholder = -next(_placeholders)
        whole = bool(M.mtmd_decode_use_non_causal(self._ctx, own))
        piece = ImageSlice(self, own, int(M.mtmd_input_chunk_get_n_tokens(own)), placeholder, whole)
        weakref.finalize(piece, M.mtmd_input_chunk_free, own)
        return piece

    # ---- embeddings ------------------------------------------------------------------------------------

    async def encode(self, slices: list[ImageSlice]) -> None:
        """Embeddings for the slices that have none yet, computed in a worker thread."""
        for image in slices:
            if image.embeddings is None:
                await asyncio.to_thread(self._encode, image)

    def _encode(self, image: ImageSlice) -> None:
        with self._encoding:
            if image.embeddings is not None:  # another request with the same image was first
                return
            status = self._m.mtmd_encode_chunk(self._ctx, image.chunk)
            if status != 0:
                raise BackendError(f"llama.cpp could not encode the image (mtmd error {status})")
            size = image.n_tokens * self.n_embd
            embeddings = (ctypes.c_float * size)()
            ctypes.memmove(embeddings, self._m.mtmd_get_output_embd(self._ctx), size * ctypes.sizeof(ctypes.c_float))
            image.embeddings = embeddings

    def decode(self, image: ImageSlice, ctx: Any, position: int, seq: int, batch_size: int) -> int:
        # Reads only what the projector is (causal attention or not) from the mtmd context, so it may run
        # while another thread encodes.
        M = self._m
        if image.embeddings is None:
            return -1
        end = L.llama_pos(0)
        no_callback = M.mtmd_helper_post_decode_callback()  # NULL
        at = ctypes.byref(end)
        status = M.mtmd_helper_decode_image_chunk(
            self._ctx, ctx, image.chunk, image.embeddings, position, seq, batch_size, at, no_callback, None
        )
        return int(status)
