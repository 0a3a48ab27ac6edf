"""The local search index: files the operator chose, searchable with SQLite FTS5 and ranked by BM25.

``openinteractions index add PATH…`` ingests text, Markdown and HTML files and images (folders are walked).
Documents are split into passages of a few hundred words so that a hit points at the part of a file that matches;
each passage keeps its document's title and a ``file://`` URL for citations. Images (image files, and the images
that documents show) are found by their captions, alt text and the text around them (``search_images``).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .search_images import IMAGE_SUFFIXES, ImageRef, html_images, image_file, is_sidecar, markdown_images

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PASSAGE_WORDS = 200
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (id INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL, title TEXT NOT NULL,
                                      mtime REAL NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(title, body, document UNINDEXED,
                                                        tokenize = 'porter unicode61');
CREATE VIRTUAL TABLE IF NOT EXISTS images USING fts5(caption, context, title, url UNINDEXED, mime_type UNINDEXED,
                                                      document UNINDEXED, tokenize = 'porter unicode61');
"""


@dataclass
class Hit:
    url: str
    title: str
    snippet: str
    score: float
    image_url: str = ""  # set on an image hit: the image itself (``url`` is the page that shows it)
    thumbnail_url: str = ""
    mime_type: str = ""


def _title_and_text(path: Path, raw: str) -> tuple[str, str]:
    if path.suffix.lower() in HTML_SUFFIXES:
        import trafilatura

        text = trafilatura.extract(raw, include_comments=False, include_tables=True) or ""
        metadata = trafilatura.extract_metadata(raw)
        title = (metadata.title if metadata and metadata.title else "") or path.stem
        return title, text
    heading = re.search(r"^#\s+(.+)$", raw, re.MULTILINE)
    return (heading.group(1).strip() if heading else path.stem.replace("_", " ").replace("-", " ")), raw


def _passages(text: str) -> Iterator[str]:
    words: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        words.extend(paragraph.split())
        if len(words) >= PASSAGE_WORDS:
            yield " ".join(words)
            words = []
    if words:
        yield " ".join(words)


def _match_expression(query: str) -> str:
    """Any of the query's words, each quoted so that FTS5 syntax in a query is just text."""
    terms = re.findall(r"\w+", query.lower())
    return " OR ".join(f'"{term}"' for term in dict.fromkeys(terms))


class LocalIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, paths: list[Path]) -> int:
        """Index every supported file under ``paths``; returns how many files were (re)indexed."""
        count = 0
        for file in self._files(paths):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                found = image_file(file)
                if found is None:
                    continue  # named like an image, but its bytes are not one
                title, text, images = found[0], "", [found[1]]
            else:
                raw = file.read_text(errors="replace")
                title, text = _title_and_text(file, raw)
                images = (html_images if file.suffix.lower() in HTML_SUFFIXES else markdown_images)(raw, file)
            self._store(file, title, text, images)
            count += 1
        return count

    def _store(self, file: Path, title: str, text: str, images: list[ImageRef]) -> None:
        url = file.resolve().as_uri()
        with self._lock, self._db:
            row = self._db.execute("SELECT id FROM documents WHERE url = ?", (url,)).fetchone()
            if row:
                self._forget(row[0])
            doc = self._db.execute(
                "INSERT INTO documents (url, title, mtime) VALUES (?, ?, ?)", (url, title, file.stat().st_mtime)
            ).lastrowid
            self._db.executemany(
                "INSERT INTO passages (title, body, document) VALUES (?, ?, ?)",
                [(title, passage, doc) for passage in _passages(text)],
            )
            self._db.executemany(
                "INSERT INTO images (caption, context, title, url, mime_type, document) VALUES (?, ?, ?, ?, ?, ?)",
                [(i.caption, i.context, title, i.url, i.mime_type, doc) for i in images],
            )

    def _forget(self, document: int) -> None:
        self._db.execute("DELETE FROM passages WHERE document = ?", (document,))
        self._db.execute("DELETE FROM images WHERE document = ?", (document,))
        self._db.execute("DELETE FROM documents WHERE id = ?", (document,))

    @staticmethod
    def _files(paths: list[Path]) -> Iterator[Path]:
        suffixes = TEXT_SUFFIXES | HTML_SUFFIXES | IMAGE_SUFFIXES
        for path in paths:
            candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
            for file in candidates:
                if file.is_file() and file.suffix.lower() in suffixes and not is_sidecar(file):
                    yield file

    def documents(self) -> list[tuple[str, str]]:
        with self._lock:
            return self._db.execute("SELECT url, title FROM documents ORDER BY url").fetchall()

    def document(self, url: str) -> tuple[str, str] | None:
        """Title and whole text (its passages joined) of an indexed document, or None if it is not indexed."""
        with self._lock:
            row = self._db.execute("SELECT id, title FROM documents WHERE url = ?", (url,)).fetchone()
            if row is None:
                return None
            bodies = self._db.execute("SELECT body FROM passages WHERE document = ? ORDER BY rowid", (row[0],))
            return row[1], "\n\n".join(body for (body,) in bodies.fetchall())

    def remove(self, url: str) -> bool:
        with self._lock, self._db:
            row = self._db.execute("SELECT id FROM documents WHERE url = ?", (url,)).fetchone()
            if row is None:
                return False
            self._forget(row[0])
            return True

    def search(self, query: str, limit: int = 5) -> list[Hit]:
        """The best passage of each of the best documents, BM25 (title words weigh 5 times body words)."""
        expression = _match_expression(query)
        if not expression:
            return []
        with self._lock:
            rows = self._db.execute(
                """SELECT d.url, d.title, snippet(passages, 1, '', '', ' … ', 40), bm25(passages, 5.0, 1.0) AS rank
                     FROM passages JOIN documents d ON d.id = passages.document
                    WHERE passages MATCH ? ORDER BY rank LIMIT ?""",
                (expression, limit * 4),
            ).fetchall()
        hits: dict[str, Hit] = {}
        for url, title, snippet, rank in rows:
            if url not in hits:
                hits[url] = Hit(url, title, snippet, -rank)
        return list(hits.values())[:limit]

    def search_images(self, query: str, limit: int = 5) -> list[Hit]:
        """The best images for ``query``, BM25 over caption (weighs 5), page title (2) and the text around (1).
        A hit's ``url`` is the document that shows the image (an image file is its own document)."""
        expression = _match_expression(query)
        if not expression:
            return []
        with self._lock:
            rows = self._db.execute(
                """SELECT images.url, d.url, images.title, images.caption, snippet(images, 1, '', '', ' … ', 30),
                          images.mime_type, bm25(images, 5.0, 1.0, 2.0) AS rank
                     FROM images JOIN documents d ON d.id = images.document
                    WHERE images MATCH ? ORDER BY rank LIMIT ?""",
                (expression, limit * 4),
            ).fetchall()
        hits: dict[str, Hit] = {}
        for image, page, title, caption, around, mime_type, rank in rows:
            if image not in hits:
                hits[image] = Hit(page, title, caption or around, -rank, image_url=image, mime_type=mime_type)
        return list(hits.values())[:limit]

    def image_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM images").fetchone()[0])
