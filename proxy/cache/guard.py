"""The near-miss guard: rejects a semantic-cache candidate whose question differs from the
new one in a way embeddings barely see.

Embeddings put "turn dark mode on" next to "turn dark mode off", "miles to km" next to "km
to miles", and "1+1" next to "21+1". Before a similar entry is served, `near_miss(query,
cached)` compares the two texts on what changes an answer without changing many words, and
returns the first difference found (or None when the candidate may be served):

- numbers: the sequence of numbers and arithmetic operators (number words count as numbers);
- negation: one says not/no/never/without/...n't and the other does not;
- polarity: on/off, enable/disable, start/stop, add/remove, increase/decrease, before/after,
  encrypt/decrypt, upload/download, ... (the same axis with opposite signs);
- named entities: a capitalised word, acronym or name-with-digits of one text that does not
  occur in the other, and quoted strings that differ;
- order: key terms on either side of a directional word (to, into, from, than, vs, over,
  per, before, after) appear the other way round in the other text. (Word order elsewhere
  is free: "a recipe for banana bread" is "a banana bread recipe".)

It is deliberately strict: a rejected paraphrase costs one upstream call, a served near miss
is a wrong answer.
"""
from __future__ import annotations

import re

from .text import CONNECTIVES, STOPWORDS, canonical, stem, words

__all__ = ["near_miss", "features"]

_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
                      "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
                      "million": "1e6", "billion": "1e9", "half": "0.5", "twice": "x2",
                      "double": "x2", "triple": "x3", "first": "#1", "second": "#2", "third": "#3",
                      "dozen": "12", "plus": "+", "times": "*", "divided": "/", "squared": "^2",
                      "cubed": "^3"})
_OPERATORS = frozenset("+-*/^=<>%")

_NEGATIONS = frozenset("not no never nothing none nobody nowhere neither nor without cannot "
                       "cant dont doesnt didnt isnt arent wasnt werent wont wouldnt shouldnt "
                       "couldnt hasnt havent hadnt mustnt aint".split())

_POLARITY_GROUPS = {
    "toggle": ("on enable activate unmute turn-on switch-on", "off disable deactivate mute turn-off switch-off"),
    "run": ("start begin launch resume boot", "stop halt pause terminate kill shutdown"),
    "open": ("open unlock unblock", "close shut lock block"),
    "show": ("show display unhide reveal", "hide conceal"),
    "allow": ("allow permit accept approve whitelist", "deny forbid reject refuse blacklist ban"),
    "amount": ("increase raise more bigger larger higher grow expand maximum max maximize up",
               "decrease lower less smaller reduce shrink minimum min minimize down"),
    "add": ("add insert create install append include attach subscribe",
            "remove delete uninstall drop exclude erase detach unsubscribe"),
    "transfer": ("upload import push send", "download export pull receive"),
    "encode": ("encrypt encode compress zip serialize", "decrypt decode decompress unzip deserialize"),
    "trade": ("buy purchase", "sell"),
    "time": ("before earlier past previous yesterday", "after later future next tomorrow"),
    "rank": ("best top most", "worst bottom least"),
    "truth": ("true correct right", "false incorrect wrong"),
    "sign": ("positive pro advantage benefit", "negative con disadvantage drawback"),
    "like": ("like love", "dislike hate"),
    "outcome": ("win gain profit", "lose loss"),
    "temperature": ("hot warm heat", "cold cool chill"),
    "speed": ("fast faster quick", "slow slower"),
    "price": ("expensive costly", "cheap cheaper inexpensive"),
    "sort": ("ascending asc", "descending desc"),
    "compass_ns": ("north northern", "south southern"),
    "compass_ew": ("east eastern", "west western"),
    "side": ("left", "right"),
    "io": ("input inbound ingress", "output outbound egress"),
    "login": ("login log-in sign-in signin", "logout log-out sign-out signout"),
}
_POLARITY: dict[str, tuple[str, int]] = {}
for _axis, (_plus, _minus) in _POLARITY_GROUPS.items():
    for _w in _plus.split():
        _POLARITY[_w] = (_axis, 1)
    for _w in _minus.split():
        _POLARITY[_w] = (_axis, -1)

_QUOTED = re.compile(r"[\"“”]([^\"“”]{1,200})[\"“”]|(?<![A-Za-z])'([^']{1,200})'(?![A-Za-z])|`([^`]{1,200})`")
_SENTENCE_END = frozenset(".!?:;")
_COMMON_INITIAL = STOPWORDS | frozenset(
    "find list write translate convert calculate compute describe compare summarize summarise "
    "define name turn switch set change enable disable create delete add remove open close "
    "start stop is are does do can could should would will what which who how why when where "
    "hi hello hey okay ok yes no give tell show make help".split())


class _Features:
    __slots__ = ("numbers", "negated", "polarity", "entities", "quoted", "keys", "all_lower",
                 "pairs")


def _entity(tok: str, initial: bool) -> bool:
    if not tok[0].isalpha() or tok == "I":
        return False
    if any(c.isdigit() for c in tok):
        return True
    if any(c.isupper() for c in tok[1:]):  # NASA, iPhone, McDonald
        return True
    if tok[0].isupper():
        return not initial or tok.lower() not in _COMMON_INITIAL
    return False


def features(text: str) -> _Features:
    f = _Features()
    toks = words(text)
    f.numbers = []
    f.polarity = {}
    f.entities = set()
    f.negated = False
    f.all_lower = set()
    keys: list[str] = []
    key_pos: list[int] = []
    conn_pos: list[int] = []
    prev_end = True
    raw = text
    for i, tok in enumerate(toks):
        low = tok.lower().replace("’", "'")
        f.all_lower.add(stem(low))
        if tok[0].isdigit():
            f.numbers.append(tok.replace(",", "").rstrip("0").rstrip(".") if "." in tok else tok.replace(",", ""))
        elif tok in _OPERATORS or tok == "→":
            if tok == "→":
                conn_pos.append(i)
            elif tok == "-" and not (i and toks[i - 1][0].isdigit()):
                pass
            else:
                f.numbers.append(tok)
        elif low in _NUMBER_WORDS:
            f.numbers.append(_NUMBER_WORDS[low])
        flat = low.replace("'", "")
        if flat in _NEGATIONS or low.endswith("n't"):
            f.negated = True
        pol = _POLARITY.get(low) or _POLARITY.get(stem(low))
        if pol is None and i + 1 < len(toks):
            pol = _POLARITY.get(f"{low}-{toks[i + 1].lower()}")
        if pol is not None:
            f.polarity.setdefault(pol[0], set()).add(pol[1])
        if tok[0].isalpha() and _entity(tok, prev_end):
            f.entities.add(stem(low))
        if low in CONNECTIVES:
            conn_pos.append(i)
        elif tok[0].isalnum() and low not in STOPWORDS and low not in _NUMBER_WORDS:
            keys.append(canonical(tok))
            key_pos.append(i)
        end = raw.find(tok)
        prev_end = False
        if end >= 0:
            tail = raw[end + len(tok):end + len(tok) + 2].strip()
            prev_end = bool(tail) and tail[0] in _SENTENCE_END
            raw = raw[end + len(tok):]
    f.keys = keys
    f.quoted = {(a or b or c).strip().lower() for a, b, c in _QUOTED.findall(text)}
    # (key term before, key term after) each directional word
    pairs = []
    for c in conn_pos:
        before = [keys[j] for j, p in enumerate(key_pos) if p < c]
        after = [keys[j] for j, p in enumerate(key_pos) if p > c]
        if before and after and before[-1] != after[0]:
            pairs.append((before[-1], after[0]))
    f.pairs = pairs
    return f


def _first(seq: list[str], item: str) -> int:
    try:
        return seq.index(item)
    except ValueError:
        return -1


def _order_flipped(a: _Features, b: _Features) -> bool:
    for x, y in a.pairs:
        ix, iy = _first(b.keys, x), _first(b.keys, y)
        if ix >= 0 and iy >= 0 and iy < ix:
            return True
    return False


def near_miss(query: str, cached: str) -> str | None:
    """The first difference that makes `cached`'s answer wrong for `query`, or None."""
    a, b = features(query), features(cached)
    if a.numbers != b.numbers:
        return "numbers"
    if a.negated != b.negated:
        return "negation"
    for axis in a.polarity.keys() & b.polarity.keys():
        if a.polarity[axis] != b.polarity[axis]:
            return "polarity"
    if any(e not in b.all_lower for e in a.entities) or any(e not in a.all_lower for e in b.entities):
        return "entities"
    if a.quoted != b.quoted:
        return "quoted"
    if _order_flipped(a, b) or _order_flipped(b, a):
        return "order"
    return None
