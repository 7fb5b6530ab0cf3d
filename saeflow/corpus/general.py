"""General-domain text from the corpora gensim ships in `gensim/test/test_data/`.

Two real English sources work offline (see OFFLINE.md): 106 Wikipedia articles
(wikitext, stripped here to readable prose with case and punctuation kept) and
the 350 ABC news documents of the Lee corpus. Both are cut into passages of
about `passage_words` words on sentence boundaries, with ids that do not depend
on anything but the text files: `wiki-<pageid>-<passage#>` and
`lee-<docno>-<passage#>` (docno counts `lee_background.cor` then `lee.cor`).

A keyword heuristic flags the finance-themed Lee documents, the only real
finance prose available offline, so the domain corpus can mix them in and the
general corpus can leave them out.
"""

from __future__ import annotations

import bz2
import html
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import gensim
import pandas as pd
from gensim.corpora.wikicorpus import extract_pages, filter_wiki

DATA_DIR = Path(gensim.__file__).parent / "test" / "test_data"
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_FILES = ("lee_background.cor", "lee.cor")
PARTS = ("wikipedia", "lee")

FINANCE_KEYWORDS = frozenset(
    "share shares shareholders stock stocks market markets dollar dollars profit "
    "profits economy economic economies investor investors investment inflation "
    "interest earnings revenue financial finance recession currency bank banks "
    "banking billion budget debt analysts prices index trading imf asx nasdaq dow "
    "unemployment exports treasurer dividend".split()
)

# Sections after these headings are lists of citations and links, not prose.
_TAIL_SECTION = re.compile(
    r"^=+\s*(references|see also|external links|further reading|notes|"
    r"bibliography|sources|citations|footnotes)\s*=+\s*$",
    re.IGNORECASE | re.MULTILINE,
)
# Lines starting like this are headings, lists, tables or indents.
_NON_PROSE_START = tuple("=*#:;|!{}")
_MIN_LINE_WORDS = 8  # shorter lines are captions and leftovers of tables
# Image captions and gallery entries survive filter_wiki as "x.jpg|caption" or
# "...|alt=description"; the few prose lines with a literal "|" go with them.
_CAPTION = re.compile(r"\||\balt=")
_LEFTOVER_MARKUP = re.compile(r"'{2,}|\[\[|\]\]|\{\{|\}\}|<[^>]*>")
_EMPTY_PARENS = re.compile(r"\(\s*[,;]?\s*\)")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
# A split after these is a false sentence end ("e.g. Paris", "J. R. R. Tolkien").
_ABBREVIATION = re.compile(
    r"(\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Lt|Mt|No|vs|ca|cf|c|e\.g|"
    r"i\.e|etc|U\.S|U\.K|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec))\.$"
)


def wiki_articles() -> Iterator[tuple[str, str, str]]:
    """Yield (pageid, title, prose) for each article of the Wikipedia sample.

    Redirect pages are skipped; articles with no prose left are skipped too.
    """
    with bz2.open(DATA_DIR / WIKI_FILE) as f:
        for title, wikitext, pageid in extract_pages(f):
            if wikitext.lstrip().upper().startswith("#REDIRECT"):
                continue
            prose = clean_wikitext(wikitext)
            if prose:
                yield pageid, title, prose


def clean_wikitext(wikitext: str) -> str:
    """Wikitext -> readable prose paragraphs (one per line), case kept."""
    text = filter_wiki(wikitext)
    tail = _TAIL_SECTION.search(text)
    if tail:
        text = text[: tail.start()]
    paragraphs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(_NON_PROSE_START) or _CAPTION.search(line):
            continue
        line = _tidy(_LEFTOVER_MARKUP.sub("", html.unescape(line)))
        if len(line.split()) >= _MIN_LINE_WORDS:
            paragraphs.append(line)
    return "\n".join(paragraphs)


def _tidy(line: str) -> str:
    # filter_wiki drops templates such as {{lang|grc|...}} and {{as of|2011}},
    # leaving "( , )", "Greek , i.e." and lines starting ", the" behind.
    line = _EMPTY_PARENS.sub("", line).lstrip(",;: ")
    line = re.sub(r"\s+([,.;:!?)])", r"\1", line)
    line = re.sub(r"([(])\s+", r"\1", line)
    return re.sub(r"\s{2,}", " ", line).strip()


def lee_documents() -> Iterator[tuple[int, str]]:
    """Yield (docno, text) for the 300 + 50 Lee news documents, in file order."""
    docno = 0
    for name in LEE_FILES:
        for raw in (DATA_DIR / name).read_bytes().splitlines():
            yield docno, _decode(raw).strip()
            docno += 1


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # lee.cor has one Latin-1 pound sign
        return raw.decode("cp1252")


def is_finance(text: str, min_distinct: int = 3, min_hits: int = 4) -> bool:
    """Whether `text` reads as finance news: enough FINANCE_KEYWORDS hits.

    Needs `min_hits` keyword tokens of which `min_distinct` differ, so one
    repeated word ("debt", "bank") is not enough.
    """
    # "West Bank" is geography, the most common false hit in the Lee corpus.
    lowered = text.lower().replace("west bank", "")
    hits = [t for t in re.findall(r"[a-z]+", lowered) if t in FINANCE_KEYWORDS]
    return len(hits) >= min_hits and len(set(hits)) >= min_distinct


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at . ! ? followed by a capital or digit."""
    sentences: list[str] = []
    for paragraph in text.splitlines():
        pieces = _SENTENCE_END.split(paragraph.strip())
        for piece in filter(None, (p.strip() for p in pieces)):
            if sentences and _ABBREVIATION.search(sentences[-1]):
                sentences[-1] += " " + piece
            else:
                sentences.append(piece)
    return sentences


def split_passages(text: str, passage_words: int) -> list[str]:
    """Group whole sentences into passages of about `passage_words` words.

    A passage closes once it reaches `passage_words`; a short remainder (under
    half of that) joins the previous passage. A sentence longer than twice
    `passage_words` (a run-on list) is cut into word chunks so passages stay
    bounded.
    """
    passages: list[list[str]] = []
    current: list[str] = []
    for sentence in _bounded(split_sentences(text), 2 * passage_words):
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= passage_words:
            passages.append(current)
            current = []
    if current:
        if passages and sum(len(s.split()) for s in current) < passage_words / 2:
            passages[-1].extend(current)
        else:
            passages.append(current)
    return [" ".join(p) for p in passages]


def _bounded(sentences: Iterable[str], max_words: int) -> Iterator[str]:
    for sentence in sentences:
        words = sentence.split()
        for i in range(0, len(words), max_words):
            yield " ".join(words[i : i + max_words])


def general_corpus(
    parts: Iterable[str] = PARTS, passage_words: int = 80, exclude_finance: bool = False
) -> pd.DataFrame:
    """Passages of the shipped corpora: columns doc_id, text, source.

    parts: any of "wikipedia", "lee". exclude_finance drops the Lee documents
    that `is_finance` flags.
    """
    parts = list(parts)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"corpora.*.parts: unknown part(s) {unknown}; use {PARTS}")
    rows: list[tuple[str, str, str]] = []
    if "wikipedia" in parts:
        for pageid, _, prose in wiki_articles():
            rows += _passage_rows(f"wiki-{pageid}", prose, passage_words, "wikipedia")
    if "lee" in parts:
        for docno, text in lee_documents():
            if not (exclude_finance and is_finance(text)):
                rows += _passage_rows(f"lee-{docno}", text, passage_words, "lee")
    return pd.DataFrame(rows, columns=["doc_id", "text", "source"])


def finance_lee_passages(passage_words: int = 80) -> pd.DataFrame:
    """Passages of the finance-themed Lee documents: columns doc_id, text, source.

    The same ids as in `general_corpus`, so the two corpora stay disjoint when
    the general one sets exclude_finance.
    """
    rows: list[tuple[str, str, str]] = []
    for docno, text in lee_documents():
        if is_finance(text):
            rows += _passage_rows(f"lee-{docno}", text, passage_words, "lee")
    return pd.DataFrame(rows, columns=["doc_id", "text", "source"])


def _passage_rows(
    prefix: str, text: str, passage_words: int, source: str
) -> list[tuple[str, str, str]]:
    passages = split_passages(text, passage_words)
    return [(f"{prefix}-{i}", p, source) for i, p in enumerate(passages)]
