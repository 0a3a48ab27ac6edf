"""Images stored once, by content: event logs and stored rows hold a reference in place of an image's base64 data.

Where a frame or a run's steps reach the store, each inline image (``{"type":"image","data":"..."``) of
``MIN_DATA`` base64 characters or more has its data replaced by ``\\x01sha256:<hex digest>``: a raw control
character, which JSON never holds unescaped, so a reference cannot be mistaken for anything a model or a client
wrote. The bytes go to ``media`` keyed by their SHA-256, once however many interactions show them; ``media_refs``
records which interactions do, and an image none shows any more is deleted with the last of them. What leaves the
store is expanded again, byte for byte as it went in: a reference is made only where the data is the canonical
base64 of the bytes it decodes to, and each caller reads only the images of an interaction it reads.

The text path never pays for this: a frame shorter than ``MIN_DATA`` is not looked at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, exists, select

from .tables import interactions, media, media_refs

MIN_DATA = 1024  # shorter data stays inline: its reference (72 bytes) and row would save little
MARK = b"\x01"  # how every reference starts: a quick test of whether a text holds any
_OPEN = b'{"type":"image","data":"'  # an image content block or delta, as the server writes both
_MIME = b',"mime_type":"'
_REFERENCE = re.compile(rb"\x01sha256:([0-9a-f]{64})")
_READ_AT_ONCE = 200  # digests per query


class MissingMedia(Exception):
    """A reference whose image is gone: the interaction was deleted while it was read."""


@dataclass(frozen=True, slots=True)
class Media:
    digest: str  # SHA-256 of ``data``, hex
    mime_type: str
    data: bytes  # the image's bytes
    encoded: bytes  # its base64 data, as the frame held it


def extract(text: bytes, known: dict[bytes, Media] | None = None) -> tuple[bytes, list[Media]]:
    """``text`` with the data of its inline images replaced by references, and those images. ``known``: replace
    only these (by their base64 data), without decoding or hashing them again."""
    pieces: list[bytes] = []
    found: list[Media] = []
    start = 0
    at = text.find(_OPEN)
    while at >= 0:
        begin = at + len(_OPEN)
        end = text.find(b'"', begin)  # base64 holds no quote (nor a backslash: JSON escapes end the match)
        if end < 0:
            break
        if end - begin >= MIN_DATA:
            encoded = text[begin:end]
            item = known.get(encoded) if known is not None else _media(encoded, _mime(text, end + 1))
            if item is not None:
                pieces += (text[start:begin], b"\x01sha256:", item.digest.encode())
                found.append(item)
                start = end
        at = text.find(_OPEN, end)
    if not found:
        return text, found
    pieces.append(text[start:])
    return b"".join(pieces), found


def extract_frames(frames: Sequence[bytes]) -> tuple[list[bytes], dict[bytes, Media]]:
    """The frames as stored, and the images they show (by their base64 data)."""
    stored = []
    known: dict[bytes, Media] = {}
    for frame in frames:
        if len(frame) >= MIN_DATA:
            frame, items = extract(frame)
            known.update((item.encoded, item) for item in items)
        stored.append(frame)
    return stored, known


def extract_text(text: str, known: dict[bytes, Media]) -> str:
    """A JSON text (a run's steps) with the images of ``known`` replaced by references."""
    if not known or len(text) < MIN_DATA:
        return text
    replaced, found = extract(text.encode(), known)
    return replaced.decode() if found else text


def _media(encoded: bytes, mime_type: str) -> Media | None:
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(data) != encoded:  # not canonical: its bytes would not give this text back
        return None
    return Media(hashlib.sha256(data).hexdigest(), mime_type, data, encoded)


def _mime(text: bytes, at: int) -> str:
    if not text.startswith(_MIME, at):
        return "application/octet-stream"
    begin = at + len(_MIME)
    return text[begin : text.find(b'"', begin)].decode()


def references(text: bytes) -> set[str]:
    return {digest.decode() for digest in _REFERENCE.findall(text)}


def expand(text: bytes, encoded: dict[str, bytes]) -> bytes:
    """``text`` with each reference replaced by its image's base64 data (``encoded``, by digest)."""
    try:
        return _REFERENCE.sub(lambda match: encoded[match.group(1).decode()], text)
    except KeyError as exc:
        raise MissingMedia(f"image {exc.args[0]} is not stored") from None


# ---- the SQL: run on a connection the store hands over ---------------------------------------------------


def write(cursor: Any, m: str, shown: list[tuple[str, Media]]) -> None:
    """In a batch (store/batch.py): the images and who shows them. On PostgreSQL an image already stored is
    locked (a no-op update) until the batch commits, so that a delete of the last interaction that showed it
    cannot remove it between this insert and the reference's; SQLite runs one write transaction at a time."""
    images = sorted({item.digest: item for _, item in shown}.values(), key=lambda item: item.digest)
    conflict = "DO NOTHING" if m == "?" else "DO UPDATE SET size = EXCLUDED.size"
    values = f"({m}, {m}, {m}, {m})"
    cursor.executemany(
        f"INSERT INTO media (digest, mime_type, size, data) VALUES {values} ON CONFLICT (digest) {conflict}",
        [(item.digest, item.mime_type, len(item.data), item.data) for item in images],
    )
    cursor.executemany(
        f"INSERT INTO media_refs (interaction_id, digest) VALUES ({m}, {m}) ON CONFLICT DO NOTHING",
        sorted({(interaction_id, item.digest) for interaction_id, item in shown}),
    )


def read(conn: Connection, interaction_id: str, digests: Collection[str]) -> dict[str, bytes]:
    """The base64 data of these images, those ``interaction_id`` shows (by digest)."""
    found: dict[str, bytes] = {}
    wanted = sorted(digests)
    for start in range(0, len(wanted), _READ_AT_ONCE):
        part = wanted[start : start + _READ_AT_ONCE]
        query = (
            select(media.c.digest, media.c.data)
            .join(media_refs, media_refs.c.digest == media.c.digest)
            .where(media_refs.c.interaction_id == interaction_id, media.c.digest.in_(part))
        )
        found.update((digest, base64.b64encode(bytes(data))) for digest, data in conn.execute(query))
    return found


def expanded(conn: Connection, interaction_id: str, text: bytes) -> bytes:
    """A stored frame or log as it was written, its images' data back in place."""
    if MARK not in text:
        return text
    return expand(text, read(conn, interaction_id, references(text)))


def expanded_text(conn: Connection, interaction_id: str, text: str) -> str:
    if "\x01" not in text:
        return text
    return expanded(conn, interaction_id, text.encode()).decode()


def shows_any(conn: Connection, interaction_id: str) -> bool:
    query = select(media_refs.c.digest).where(media_refs.c.interaction_id == interaction_id).limit(1)
    return conn.execute(query).first() is not None


def forget(conn: Connection, interaction_id: str) -> None:
    """In the transaction that deletes an interaction: its references, and the images no other one shows."""
    shown = media_refs.c.interaction_id == interaction_id
    digests = list(conn.execute(select(media_refs.c.digest).where(shown)).scalars())
    if digests:
        conn.execute(delete(media_refs).where(shown))
        _collect(conn, digests)


def forget_orphans(conn: Connection) -> None:
    """In the sweep's transaction: the references of interactions that are gone, and the images no one shows."""
    gone = ~exists().where(interactions.c.id == media_refs.c.interaction_id)
    digests = list(conn.execute(select(media_refs.c.digest).where(gone).distinct()).scalars())
    if digests:
        conn.execute(delete(media_refs).where(gone))
        _collect(conn, digests)


def _collect(conn: Connection, digests: Iterable[str]) -> None:
    """Delete the images of ``digests`` that no interaction shows. Their rows are locked first (PostgreSQL; in
    digest order, as batches insert them): a batch storing one of them again waits, and either commits first
    (the delete, a statement later, sees its reference) or stores it afresh once the delete has committed."""
    wanted = sorted(set(digests))
    unused = ~exists().where(media_refs.c.digest == media.c.digest)
    for start in range(0, len(wanted), _READ_AT_ONCE):
        part = wanted[start : start + _READ_AT_ONCE]
        conn.execute(select(media.c.digest).where(media.c.digest.in_(part)).order_by(media.c.digest).with_for_update())
        conn.execute(delete(media).where(media.c.digest.in_(part), unused))
