"""Replays of a stored event log, read from the store a page at a time.

A reader holds the page its client is taking, not the log: a client that stops reading costs its response
one page here and about one more in the connection's write buffer, however long the log (up to
``limits.max_event_log_bytes``). Frames end with a blank line, which JSON never contains, so event ``n``
ends at the ``n``-th blank line; pages cut frames anywhere, which the bytes on the wire do not show.

The stored log holds references to the images it shows (store/media.py): a page with one is cut after its last
whole frame (the rest goes with the next page) and its references replaced by the images' data, so the bytes
sent are those the run's readers were sent.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from ..events.log import DONE, StreamCut, split_frames
from ..store import media
from ..store.base import Store

PAGE_BYTES = 1 << 20  # SQLite finds a page by walking the blob's pages from its start: fewer, larger reads


async def stored_stream(store: Store, interaction_id: str, size: int, after: int) -> AsyncGenerator[bytes, None] | None:
    """The stored frames after event ``after``, then ``DONE``; None if the log has fewer than ``after``
    events. ``size``: the log's length. Raises ``StreamCut`` if the log is gone meanwhile."""
    if size > PAGE_BYTES:
        offset = await offset_after(store, interaction_id, after, size)
        return None if offset is None else stored_pages(store, interaction_id, offset, size)
    page = await _page(store, interaction_id, 0, size)  # most logs: one read, and no more than a page held
    frames = split_frames(page)
    if after > len(frames):
        return None
    return _rest(store, interaction_id, page[sum(map(len, frames[:after])) :])


async def _rest(store: Store, interaction_id: str, data: bytes) -> AsyncGenerator[bytes, None]:
    yield await _expanded(store, interaction_id, data) + DONE


async def _expanded(store: Store, interaction_id: str, data: bytes) -> bytes:
    """Whole frames as they were sent: their images' data in place of the references."""
    if media.MARK not in data:
        return data
    wanted = media.references(data)
    found = await store.media(interaction_id, wanted)
    if len(found) < len(wanted):
        raise StreamCut(f"interaction {interaction_id} was deleted while its events were being replayed")
    return media.expand(data, found)


async def _page(store: Store, interaction_id: str, offset: int, size: int) -> bytes:
    page = await store.events(interaction_id, offset, size)
    if len(page) != size:
        raise StreamCut(f"interaction {interaction_id} was deleted while its events were being replayed")
    return page


async def offset_after(store: Store, interaction_id: str, after: int, size: int) -> int | None:
    """Where event ``after + 1`` starts; None if there are fewer than ``after`` events."""
    if after == 0:
        return 0
    seen = offset = 0
    newline_before = False  # the previous page ended with the first newline of a frame's end
    while offset < size:
        page = await _page(store, interaction_id, offset, min(PAGE_BYTES, size - offset))
        start = 0
        if newline_before and page[:1] == b"\n":
            seen, start = seen + 1, 1
            if seen == after:
                return offset + 1
        while (end := page.find(b"\n\n", start)) >= 0:
            seen, start = seen + 1, end + 2
            if seen == after:
                return offset + start
        newline_before = start < len(page) and page.endswith(b"\n")
        offset += len(page)
    return None


async def stored_pages(store: Store, interaction_id: str, offset: int, size: int) -> AsyncGenerator[bytes, None]:
    """The stored log from byte ``offset`` (where a frame starts) to its end (``size``), a page at a time; the
    last one carries ``DONE`` (one write)."""
    if offset >= size:
        yield DONE
        return
    held = b""  # the start of a frame cut by the last page, which held a reference
    while offset < size:
        page = await _page(store, interaction_id, offset, min(PAGE_BYTES, size - offset))
        offset += len(page)
        if held:
            page, held = held + page, b""
        if media.MARK in page:
            if offset < size:  # a reference may be cut: the frame it is in goes with the next page
                end = page.rfind(b"\n\n")
                end = end + 2 if end >= 0 else 0
                page, held = page[:end], page[end:]
            page = await _expanded(store, interaction_id, page)
        if page or offset >= size:
            yield page + DONE if offset >= size else page
