"""Research notes: what the note taker answers, and the check that keeps a note only if it quotes the text of a
document read in this run.

A model copies a sentence approximately (a word changed, a comma for a full stop, a fragment, two sentences run
together, the wrong document's number). A quote found verbatim in the document it names is kept as it is;
otherwise the quote is matched, word by word, against the sentences of every document read for the note, and
a close enough match is snapped to that sentence: the note kept quotes the document's exact text (and names the
document it is in), so a citation always points at a passage the run read. A claim that copies a sentence is
matched first (the sentence it copies is what supports it, whatever the quote says); nothing close to either:
the note is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

_NOTE = {
    "type": "object",
    # Bounded strings: a small model under a grammar otherwise writes until its token limit; with a floor it
    # copies a sentence rather than a few punctuation marks.
    "properties": {
        "source": {"type": "integer", "minimum": 1},
        "quote": {"type": "string", "minLength": 20, "maxLength": 300},
        "claim": {"type": "string", "minLength": 10, "maxLength": 200},
    },
    "required": ["source", "quote", "claim"],
}
NOTES_SCHEMA = {
    "type": "object",
    "properties": {"notes": {"type": "array", "items": _NOTE, "maxItems": 4}},
    "required": ["notes"],
}
MIN_WORDS = 4  # a sentence shorter than this is not matched approximately: too many quotes would fit it
COVERAGE = 0.75  # the share of the shorter side's words that must match, in order
_WORD = re.compile(r"\w+")
_LETTERS = re.compile(r"[^\W\d_]{2,}")
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?](?=\s|$)|$)", re.MULTILINE)


@dataclass
class Note:
    url: str
    title: str
    claim: str
    quote: str


@dataclass
class _Sentence:
    page: int
    text: str
    words: list[str]


def _squeeze(text: str) -> str:
    return " ".join(text.split()).casefold()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def checked(item: Any, pages: list[dict[str, Any]]) -> Note | None:
    """The note, its quote the exact text of a document read in this run (snapped to the sentence it copies
    approximately), else None."""
    if not isinstance(item, dict):
        return None
    source, claim, quote = item.get("source"), item.get("claim"), item.get("quote")
    if not (isinstance(source, int) and isinstance(claim, str) and claim.strip() and isinstance(quote, str)):
        return None
    if 1 <= source <= len(pages) and len(quote.strip()) >= 8:
        page = pages[source - 1]
        if _squeeze(quote) in _squeeze(str(page.get("text") or "")):
            return _note(page, claim, quote.strip())
    sentences = [s for i, page in enumerate(pages) for s in _sentences(i, page)]
    named = source - 1 if 1 <= source <= len(pages) else None
    found = _closest(_words(claim), sentences, named) or _closest(_words(quote), sentences, named)
    if found is None:
        return None
    return _note(pages[found.page], claim, found.text)


def _note(page: dict[str, Any], claim: str, quote: str) -> Note:
    # A claim without words of its own (a small model's "2},{") says what its quote says.
    claim = claim.strip() if len(_LETTERS.findall(claim)) >= 3 else quote
    return Note(page["url"], str(page.get("title") or page["url"]), claim, quote)


def _sentences(index: int, page: dict[str, Any]) -> list[_Sentence]:
    """The page's sentences as they are in its text (a Markdown title that runs into the first one left out)."""
    text, title = str(page.get("text") or ""), str(page.get("title") or "")
    found = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group().strip()
        for heading in (f"# {title} ", f"{title} "):
            if title and sentence.startswith(heading) and len(sentence) > len(heading):
                sentence = sentence[len(heading) :].lstrip()
                break
        words = _words(sentence)
        if len(words) >= MIN_WORDS:
            found.append(_Sentence(index, sentence, words))
    return found


def _closest(quote: list[str], sentences: list[_Sentence], named: int | None) -> _Sentence | None:
    """The sentence the quote copies best, if it copies one closely: most of the sentence's words, in order and
    within about the sentence's length of the quote (a quote that runs on past it); or most of the quote's words,
    in order (a fragment of it). On a tie, the sentence of the document the note named."""
    best: tuple[float, bool] | None = None
    chosen = None
    for sentence in sentences:
        score = _match(quote, sentence.words)
        if score is None:
            continue
        rank = (score, sentence.page == named)
        if best is None or rank > best:
            best, chosen = rank, sentence
    return chosen


def _match(quote: list[str], sentence: list[str]) -> float | None:
    if not quote:
        return None
    blocks = [b for b in SequenceMatcher(None, sentence, quote, autojunk=False).get_matching_blocks() if b.size]
    if not blocks:
        return None
    matched = sum(b.size for b in blocks)
    span = blocks[-1].b + blocks[-1].size - blocks[0].b  # the part of the quote that the matches lie in
    reach = blocks[-1].a + blocks[-1].size - blocks[0].a  # and of the sentence
    copies_sentence = matched >= COVERAGE * len(sentence) and span <= 1.5 * len(sentence) + 2
    copies_fragment = len(quote) > MIN_WORDS and matched >= COVERAGE * len(quote) and reach <= 1.5 * len(quote) + 2
    if not (copies_sentence or copies_fragment):
        return None
    return matched / max(len(sentence), span)
