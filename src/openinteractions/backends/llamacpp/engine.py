"""A llama.cpp engine that decodes several sequences in one context, in one worker thread.

llama.cpp contexts are not thread-safe, so one thread owns the context and runs the scheduler: each step it
admits waiting jobs into free slots, builds one batch (one token for every decoding job plus a share of the
pending prompt tokens of the jobs still prefilling), decodes it, and samples every job that has logits.
Jobs stream their tokens back to asyncio through ``call_soon_threadsafe``.

Each slot is a llama.cpp sequence that keeps its tokens in the KV cache after its job ends. A new job goes to
the free slot whose cached tokens share the longest prefix with its prompt, so a conversation's next turn
only evaluates what is new.

A job may continue an answer cut off by a crash: its ``replay`` text (the answer so far) is generated again,
one token per step as it was the first time, and never sent back. While the token sampled is the text's next
piece it is taken as it is: greedy or seeded decoding samples the very tokens it sampled before (however the
text would tokenize: a grammar makes the model spell words out), so the decoding goes on exactly as it would
have. Once one is not (unseeded sampling), the rest of the text is fed as it tokenizes, each token taking the
place of a sampled one. Tokens evaluated as part of the prompt would have been faster but not exact: a token in
a batch of several gets other values than alone, and greedy decoding went on differently at 13 of 24 cuts tried
(with the very tokens generated). Replaying costs about what generating the text did.

A prompt may hold images (a model served with a multimodal projector, vision.py): each slice of embeddings is a
span of negative placeholder tokens, ``Job.media`` maps the span's start to what decodes it. The prefill decodes
a span in a llama_decode of its own when it reaches it, and a cached prefix never ends inside one.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import llama_cpp as L

logger = logging.getLogger(__name__)

_LOG_CALLBACK: Any = None
# A cached prefix shorter than this is not worth evicting another conversation's tokens for.
REUSE_MIN_TOKENS = 64
# A prompt's last token evaluated in a batch of its own gets other logits (by ~0.5 here) than in a batch with
# the tokens before it, so a prompt always ends with a chunk of at least this many tokens: from the cache or
# from scratch, a seeded request then samples the same tokens.
MIN_LAST_CHUNK = 2


def llama_log_forwarder() -> Any:
    """The log callback silence_llama_logs() installed, for libmtmd's logs too (vision.py)."""
    return _LOG_CALLBACK


def silence_llama_logs() -> None:
    """llama.cpp prints every tensor it loads to stderr; send its messages to Python's logging instead."""
    global _LOG_CALLBACK

    @L.llama_log_callback
    def forward(level: int, text: bytes, _data: Any) -> None:
        if level == 4:  # GGML_LOG_LEVEL_ERROR (5 is a continuation line)
            logger.error("llama.cpp: %s", text.decode(errors="replace").rstrip())

    _LOG_CALLBACK = forward
    L.llama_log_set(forward, ctypes.c_void_p(0))


class Embedded(Protocol):
    """A span of a prompt given as embeddings (an image slice): ``n_tokens`` placeholders in ``Job.prompt``."""

    n_tokens: int

    def decode(self, ctx: Any, position: int, seq: int, batch_size: int) -> int: ...


@dataclass
class Sampling:
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    seed: int | None = None
    grammar: str | None = None  # GBNF, root rule "root"


@dataclass(eq=False)
class Job:
    """One generation: a prompt and how to sample; ``on_event`` receives ("token", id, piece) and finally
    ("end", reason, stats) or ("error", message), on the asyncio loop."""

    prompt: list[int]
    sampling: Sampling
    max_tokens: int
    on_event: Callable[[tuple[Any, ...]], None]
    # Called in the worker with the text generated so far: a Sampling to switch to, True to keep the current
    # one for good, None to be asked again after the next token.
    switch: Callable[[str], Sampling | bool | None] | None = None
    # The answer so far, when the job continues one (see the module's doc): generated again, not sent back.
    # It counts against max_tokens, as it did the first time.
    replay: bytes = b""
    media: dict[int, Embedded] = field(default_factory=dict)  # by the index where its span starts in prompt
    cancelled: bool = False
    # scheduler state
    slot: int = -1
    pending: list[int] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    next_token: int = -1  # the token the next step feeds: the last one sampled or replayed
    replayed: int = 0  # bytes of the replay text done
    replayed_tokens: int = 0
    forced: list[int] | None = None  # the replay's rest, as it tokenizes, once a sampled token was not its own
    text: str = ""
    cached: int = 0
    sampler: Any = None
    logit_index: int = -1
    started: float = 0.0

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # exactly what this sequence holds in the KV cache
    job: Job | None = None
    used: float = 0.0


class EngineClosed(Exception):
    pass


class LlamaEngine:
    def __init__(
        self,
        model_path: str,
        *,
        context_size: int = 4096,
        parallel: int = 4,
        threads: int = 2,
        batch_size: int = 512,
    ) -> None:
        silence_llama_logs()
        L.llama_backend_init()
        params = L.llama_model_default_params()
        self._model = L.llama_model_load_from_file(model_path.encode(), params)
        if not self._model:
            raise ValueError(f"llama.cpp could not load {model_path}")
        self.vocab = L.llama_model_get_vocab(self._model)
        cparams = L.llama_context_default_params()
        cparams.n_ctx = context_size * parallel
        cparams.n_batch = batch_size
        cparams.n_ubatch = batch_size
        cparams.n_seq_max = parallel
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = False
        # With flash attention (llama.cpp's default on CPU) a token's logits depend on how its prompt was split
        # into batches, by up to ~0.6 here, so a prompt continued from the KV cache sampled other tokens than the
        # same prompt evaluated whole, with the same seed. Without it they are bit-identical however the prompt
        # is split (see MIN_LAST_CHUNK), and decoding is faster too (here: decode +7 %, prompt evaluation -13 %).
        cparams.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = L.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise ValueError("llama.cpp could not create a context")
        self.context_size = L.llama_n_ctx_seq(self._ctx)
        tokens = range(L.llama_vocab_n_tokens(self.vocab))  # special ones too: prompts are tokenized with them
        self.longest_token_bytes = max(len(self.token_text(token, special=True)) for token in tokens)
        self._memory = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(batch_size, 0, 1)
        self.batch_size = batch_size
        self._slots = [_Slot(seq) for seq in range(parallel)]
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._waiting: list[Job] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="llama-engine", daemon=True)
        self._thread.start()

    # ---- public, any thread -------------------------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = L.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            L.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode(errors="replace")

    def tokenize(self, text: str | bytes, *, special: bool = True, add_bos: bool = False) -> list[int]:
        data = text.encode() if isinstance(text, str) else text
        capacity = len(data) + 8
        tokens = (L.llama_token * capacity)()
        n = L.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        if n < 0:
            capacity = -n
            tokens = (L.llama_token * capacity)()
            n = L.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        return list(tokens[:n])

    @property
    def model(self) -> Any:
        return self._model

    def token_text(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def submit(self, job: Job) -> None:
        if self._closed:
            raise EngineClosed("the engine is shut down")
        self._inbox.put(job)

    def close(self, before_model_free: Callable[[], None] | None = None) -> None:
        """Stop the worker and free llama.cpp's state; ``before_model_free``: what holds the model (a projector)."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout=30)
        if before_model_free is not None:
            before_model_free()
        L.llama_batch_free(self._batch)
        L.llama_free(self._ctx)
        L.llama_model_free(self._model)

    # ---- the worker -----------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            active = [s.job for s in self._slots if s.job is not None]
            if not active and not self._waiting:
                job = self._inbox.get()
                if job is None:
                    return
                self._waiting.append(job)
            if not self._drain_inbox():
                return
            try:
                self._admit()
                self._step()
            except Exception as exc:  # a failed decode fails the jobs in it, not the engine
                logger.exception("llama.cpp step failed")
                for slot in self._slots:
                    if slot.job is not None:
                        self._finish(slot, ("error", f"llama.cpp failed: {exc}"))
                        L.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
                        slot.tokens = []

    def _drain_inbox(self) -> bool:
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return True
            if job is None:
                return False
            self._waiting.append(job)

    def _admit(self) -> None:
        for job in [j for j in self._waiting if j.cancelled]:
            job.on_event(("end", "cancelled", self._stats(job)))
        self._waiting = [j for j in self._waiting if not j.cancelled]
        while self._waiting:
            free = [s for s in self._slots if s.job is None]
            if not free:
                return
            job = self._waiting.pop(0)
            try:
                sampler = _sampler_chain(self.vocab, job.sampling)
            except ValueError as exc:
                job.on_event(("error", str(exc)))
                continue
            slot = max(free, key=lambda s: _preference(s, job.prompt))
            keep = max(0, min(_common_prefix(slot.tokens, job.prompt), len(job.prompt) - MIN_LAST_CHUNK))
            if job.media:
                keep = _outside_spans(keep, job.media)
            L.llama_memory_seq_rm(self._memory, slot.seq, keep, -1)
            slot.tokens = slot.tokens[:keep]
            slot.job = job
            job.slot, job.cached, job.pending = slot.seq, keep, job.prompt[keep:]
            job.sampler = sampler
            job.started = time.perf_counter()

    def _step(self) -> None:
        batch, n = self._batch, 0
        decoding = [s for s in self._slots if s.job is not None and not s.job.pending and s.job.next_token >= 0]
        prefilling = [s for s in self._slots if s.job is not None and s.job.pending]
        for slot in list(decoding) + list(prefilling):
            if slot.job is not None and slot.job.cancelled:
                self._finish(slot, ("end", "cancelled", self._stats(slot.job)))
        decoding = [s for s in decoding if s.job is not None]
        prefilling = [s for s in prefilling if s.job is not None]
        for slot in decoding:
            job = slot.job
            assert job is not None
            n = self._add(n, job.next_token, len(slot.tokens), slot.seq, True)
            slot.tokens.append(job.next_token)
            job.logit_index = n - 1
        budget = self.batch_size - n
        for i, slot in enumerate(prefilling):
            job = slot.job
            assert job is not None
            share = max(1, budget // (len(prefilling) - i))
            if job.media:
                if not self._decode_media(slot, job):
                    continue
                share = _text_share(len(slot.tokens), job, share)
            else:
                share = _chunk_size(len(job.pending), share)
            if share == 0:
                continue
            chunk, job.pending = job.pending[:share], job.pending[share:]
            for k, token in enumerate(chunk):
                last = not job.pending and k == len(chunk) - 1
                n = self._add(n, token, len(slot.tokens), slot.seq, last)
                slot.tokens.append(token)
            job.logit_index = n - 1 if not job.pending else -1
            budget -= len(chunk)
        if n == 0:
            return
        batch.n_tokens = n
        status = L.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        for slot in self._slots:
            job = slot.job
            if job is not None and not job.pending and job.logit_index >= 0:
                self._sample(slot, job)

    def _decode_media(self, slot: _Slot, job: Job) -> bool:
        """Decode the spans of embeddings at the front of ``job``'s pending prompt, each in a llama_decode of
        its own (this step's batch is decoded after them). False: the job failed."""
        while job.pending and (span := job.media.get(len(slot.tokens))) is not None:
            status = span.decode(self._ctx, len(slot.tokens), slot.seq, self.batch_size)
            if status != 0:
                L.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
                slot.tokens = []
                self._finish(slot, ("error", f"llama.cpp could not decode an image (status {status})"))
                return False
            slot.tokens.extend(job.pending[: span.n_tokens])
            job.pending = job.pending[span.n_tokens :]
        return True

    def _add(self, n: int, token: int, pos: int, seq: int, logits: bool) -> int:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = pos
        batch.seq_id[n][0] = seq
        batch.n_seq_id[n] = 1
        batch.logits[n] = logits
        return n + 1

    def _sample(self, slot: _Slot, job: Job) -> None:
        if job.forced or (job.forced is None and job.replayed < len(job.replay)):
            self._replay(slot, job)
            return
        token = L.llama_sampler_sample(job.sampler, self._ctx, job.logit_index)
        job.logit_index = -1
        if L.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, ("end", "stop", self._stats(job)))
            return
        job.generated.append(token)
        job.next_token = token
        piece = self.token_text(token)
        job.on_event(("token", token, piece))
        if job.switch is not None:
            job.text += piece.decode(errors="ignore")
            decision = job.switch(job.text)
            if isinstance(decision, Sampling):
                L.llama_sampler_free(job.sampler)
                job.sampler = _sampler_chain(self.vocab, decision)
            if decision is not None:
                job.switch = None
        if len(job.generated) + job.replayed_tokens >= job.max_tokens:
            self._finish(slot, ("end", "max_tokens", self._stats(job)))
        elif len(slot.tokens) + 1 >= self.context_size:
            self._finish(slot, ("end", "context_full", self._stats(job)))

    def _replay(self, slot: _Slot, job: Job) -> None:
        """The next token of the replay text (see the module's doc)."""
        job.logit_index, logits = -1, job.logit_index
        job.replayed_tokens += 1
        if job.forced is None:
            rest = job.replay[job.replayed :]
            trial = L.llama_sampler_clone(job.sampler)  # sampling changes its state: kept only if it fits
            token = L.llama_sampler_sample(trial, self._ctx, logits)
            piece = b"" if L.llama_vocab_is_eog(self.vocab, token) else self.token_text(token)
            if piece and rest.startswith(piece):
                L.llama_sampler_free(job.sampler)
                job.sampler, job.next_token = trial, token
                job.replayed += len(piece)
                self._replayed(slot, job)
                return
            L.llama_sampler_free(trial)
            job.forced = self.tokenize(rest)
        token = job.forced.pop(0)
        if job.sampling.grammar is not None:
            if not _admits(L.llama_sampler_chain_get(job.sampler, 0), token):
                self._finish(slot, ("error", "the answer to continue does not fit its grammar"))
                return
            L.llama_sampler_accept(job.sampler, token)
        job.next_token = token
        self._replayed(slot, job)

    def _replayed(self, slot: _Slot, job: Job) -> None:
        if job.replayed_tokens >= job.max_tokens:
            self._finish(slot, ("end", "max_tokens", self._stats(job)))
        elif len(slot.tokens) + 1 >= self.context_size:
            self._finish(slot, ("end", "context_full", self._stats(job)))

    def _stats(self, job: Job) -> dict[str, Any]:
        return {"prompt_tokens": len(job.prompt), "cached_tokens": job.cached, "generated_tokens": len(job.generated)}

    def _finish(self, slot: _Slot, event: tuple[Any, ...]) -> None:
        job = slot.job
        assert job is not None
        slot.job = None
        slot.used = time.monotonic()
        if job.sampler is not None:
            L.llama_sampler_free(job.sampler)
            job.sampler = None
        job.on_event(event)


def _preference(slot: _Slot, prompt: list[int]) -> tuple[int, float]:
    """Which free slot a prompt should take: one that holds a good part of it (its own conversation), else an
    empty one, else the one used longest ago. A short shared prefix (a chat template's header, a default system
    prompt) does not justify evicting what another conversation has cached."""
    common = _common_prefix(slot.tokens, prompt)
    if common >= REUSE_MIN_TOKENS or (common > 0 and common == len(slot.tokens)):
        return 2, common
    if not slot.tokens:
        return 1, 0
    return 0, -slot.used


def _chunk_size(pending: int, share: int) -> int:
    """How many of a prompt's ``pending`` tokens to evaluate now, given its ``share`` of the batch: never so
    many that fewer than MIN_LAST_CHUNK would be left for the last chunk (0: wait for a larger share)."""
    if pending <= share:
        return pending
    return max(0, min(share, pending - MIN_LAST_CHUNK))


def _outside_spans(keep: int, media: dict[int, Embedded]) -> int:
    """A cached prefix of ``keep`` tokens, cut back to the start of a span of embeddings it would end inside."""
    for start, span in media.items():
        if start < keep < start + span.n_tokens:
            return start
    return keep


def _text_share(position: int, job: Job, share: int) -> int:
    """How many of a prompt's pending tokens to evaluate now when it holds spans of embeddings: the text up to
    the next span (all of it, or ``share``), or by ``_chunk_size`` after the last one."""
    following = [start for start in job.media if start >= position]
    if not following:
        return _chunk_size(len(job.pending), share)
    return min(min(following) - position, share)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _admits(grammar: Any, token: int) -> bool:
    """Whether a grammar sampler admits ``token`` next (accepting one it does not would abort the process)."""
    candidate = (L.llama_token_data * 1)(L.llama_token_data(token, 0.0, 0.0))
    candidates = L.llama_token_data_array(candidate, 1, -1, False)
    L.llama_sampler_apply(grammar, ctypes.byref(candidates))
    return bool(math.isfinite(candidate[0].logit))


def _sampler_chain(vocab: Any, sampling: Sampling) -> Any:
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    if sampling.grammar is not None:
        grammar = L.llama_sampler_init_grammar(vocab, sampling.grammar.encode(), b"root")
        if not grammar:
            L.llama_sampler_free(chain)
            raise ValueError("llama.cpp rejected the grammar")
        L.llama_sampler_chain_add(chain, grammar)
    if sampling.temperature <= 0:
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        return chain
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(sampling.top_k))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(sampling.top_p, 1))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(sampling.temperature))
    seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def deliver_to(loop: asyncio.AbstractEventLoop, queue_: asyncio.Queue[tuple[Any, ...]]) -> Callable[..., None]:
    """An ``on_event`` that hands events to an asyncio queue from the worker thread."""

    def deliver(event: tuple[Any, ...]) -> None:
        loop.call_soon_threadsafe(queue_.put_nowait, event)

    return deliver
