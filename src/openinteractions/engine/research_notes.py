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
# Words that a reordered copy adds or drops ("was founded by" for "founded"): left out when words are compared
# as sets.
_GRAMMAR = frozenset(
    ["a", "an", "the", "is", "are", "was", "were", "be", "been", "by", "of", "in", "on", "at", "to", "for", "and",
     "or", "with", "as", "it", "its", "that", "this"]
)  # fmt: skip
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
            return _note(page, _said(claim, quote.strip()), quote.strip())
    sentences = [s for i, page in enumerate(pages) for s in _sentences(i, page)]
    named = source - 1 if 1 <= source <= len(pages) else None
    found = _closest(claim, sentences, named) or _closest(quote, sentences, named)
    if found is None:
        return None
    # A claim that names what its sentence does not (another name, another number) says what the sentence says.
    words, marked = _marked_words(claim)
    foreign = any(mark and word not in found.words for word, mark in zip(words, marked, strict=True))
    return _note(pages[found.page], found.text if foreign else _said(claim, found.text), found.text)


def _said(claim: str, quote: str) -> str:
    # A claim without words of its own (a small model's "2},{") says what its quote says.
    return claim.strip() if len(_LETTERS.findall(claim)) >= 3 else quote


def _note(page: dict[str, Any], claim: str, quote: str) -> Note:
    return Note(page["url"], str(page.get("title") or page["url"]), claim, quote)


def _marked_words(text: str) -> tuple[list[str], list[bool]]:
    """The text's words, and which of them are names or numbers (capitalized after the first word, or digits):
    an approximate copy may change any word but those."""
    raw = _WORD.findall(text)
    marked = [any(c.isdigit() for c in w) or (i > 0 and w[0].isupper()) for i, w in enumerate(raw)]
    return [w.casefold() for w in raw], marked


def _sentences(index: int, page: dict[str, Any]) -> list[_Sentence]:
    """The page's sentences as they are in its text (a Markdown title that runs into the first one left out)."""
    text, title = str(page.get("text") or ""), str(page.get("title") or "")
    found = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group().strip()
        heading = f"# {title} "
        if title and sentence.startswith(heading) and len(sentence) > len(heading):
            sentence = sentence[len(heading) :].lstrip()
        words = _words(sentence)
        if len(words) >= MIN_WORDS:
            found.append(_Sentence(index, sentence, words))
    return found


def _closest(text: str, sentences: list[_Sentence], named: int | None) -> _Sentence | None:
    """The sentence the text copies best, if it copies one closely; on a tie, one of the document the note named."""
    words, marked = _marked_words(text)
    best: tuple[float, bool] | None = None
    chosen = None
    for sentence in sentences:
        score = _match(words, marked, sentence.words)
        if score is not None and (best is None or (score, sentence.page == named) > best):
            best, chosen = (score, sentence.page == named), sentence
    return chosen


def _match(words: list[str], marked: list[bool], sentence: list[str]) -> float | None:
    """How closely ``words`` copy the sentence (None: not closely enough). A close copy has every name and number
    of the part that matches in the sentence, and is one of: most of the sentence's words in order, within about
    its length (a copy that runs on past it); most of its own words in order (a fragment); the sentence's words
    reordered (most of each side's words shared, grammar words aside)."""
    if not words:
        return None
    present = set(sentence)
    blocks = [b for b in SequenceMatcher(None, sentence, words, autojunk=False).get_matching_blocks() if b.size]
    scores, window = [], range(len(words))
    if blocks:
        matched = sum(b.size for b in blocks)
        span = blocks[-1].b + blocks[-1].size - blocks[0].b  # the part of the text that the matches lie in
        reach = blocks[-1].a + blocks[-1].size - blocks[0].a  # and of the sentence
        if matched >= COVERAGE * len(sentence) and span <= 1.5 * len(sentence) + 2:
            scores.append(matched / max(len(sentence), span))
            window = range(blocks[0].b, blocks[0].b + span)
        elif len(words) > MIN_WORDS and matched >= COVERAGE * len(words) and reach <= 1.5 * len(words) + 2:
            scores.append(matched / len(sentence))
    own, theirs = set(words) - _GRAMMAR, present - _GRAMMAR
    shared = len(own & theirs)
    if len(own) >= MIN_WORDS and shared >= 0.8 * len(own) and shared >= 0.6 * len(theirs):
        scores.append(shared / len(own | theirs))
    if not scores or any(marked[i] and words[i] not in present for i in window):
        return None
    return max(scores)
