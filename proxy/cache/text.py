"""Word-level text handling shared by the built-in embedder and the near-miss guard:
tokens, a crude stemmer, stopwords and a small table of everyday synonyms."""
from __future__ import annotations

import re

__all__ = ["words", "stem", "STOPWORDS", "CONNECTIVES", "SYNONYMS", "canonical"]

_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,]\d+)*|[+\-*/^=<>%→]")

# Directional words: what stands on either side of them cannot be swapped.
CONNECTIVES = frozenset("to into from than vs versus over per before after minus -> → onto towards".split())

STOPWORDS = frozenset("""
a an the and or but if of at by for with about as in on off to into from than vs versus over per
before after onto towards is are was were be been being am do does did doing have has had having
i me my mine we us our you your yours he him his she her it its they them their this that these
those there here what which who whom whose when where why how can could would should will shall
may might must please tell explain give show let lets let's i'm i'd i've you're it's what's
how's that's there's so just really very some any all each every one's also too then now
up down out way thing things something anything get got make made use using used
""".split()) - {"up", "down", "on", "off", "before", "after", "show"}

# Everyday synonyms mapped to one word, so "buy a car" and "purchase an automobile" share
# features. Only words of one meaning and one polarity are merged.
_GROUPS = """
big large huge
small little tiny
fast quick rapid speedy
buy purchase
car automobile vehicle
begin start commence
end finish
explain describe clarify
picture image photo
film movie
help assist aid
error bug issue problem
fix repair resolve solve
cost price
cheap inexpensive affordable
delete remove erase
create make build generate
say tell
difference differ differences
meaning mean means definition define
distance far
recipe cook cooking
benefit benefits advantage advantages pro pros
write compose draft
summary summarize summarise
translate translation
capital capitol
""".strip().splitlines()

SYNONYMS: dict[str, str] = {}
for _line in _GROUPS:
    _ws = _line.split()
    for _w in _ws:
        SYNONYMS[_w] = _ws[0]


def stem(word: str) -> str:
    """Lower-case, possessive and plural endings off, a few verb endings off."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.strip("'-")
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    return w


def words(text: str) -> list[str]:
    """Tokens in order: words (as written), numbers, and one-character operators."""
    return _WORD.findall(text)


def canonical(token: str) -> str:
    """A word as the embedder and the guard compare it: stemmed, synonyms merged."""
    low = token.lower().replace("’", "'")
    if low in SYNONYMS:
        return SYNONYMS[low]
    s = stem(low)
    return SYNONYMS.get(s, s)
