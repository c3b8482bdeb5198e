"""How hard is a request? A local, fast, explainable estimate of the quality tier it needs.

The estimate is a score: it starts at `base` and each rule that fires adds its weight
(prompt length, code, math, multi-step instructions, reasoning words, conversation depth,
tools, requested output length; a short classification/extraction task subtracts). The
score maps to a minimum catalog tier (1-5) through ascending `tiers` thresholds: tier =
1 + the number of thresholds the score reaches. Every rule that fired is named in the
reasons, so `x-faregate-route` can say why a request went where it went.

Only the system prompt and the last user message are scanned for words and patterns (the
first and last `scan_chars`/2 characters of each): they carry the task; earlier turns count through the token
total and the conversation depth. No I/O, no model, microseconds per request.
"""
from __future__ import annotations

import re
from typing import Any

import msgspec

from .routeconfig import DEFAULT_RULES, ComplexityConfig, ExtraRule, Rule

__all__ = ["ComplexityConfig", "Rule", "ExtraRule", "Estimate", "ComplexityEstimator", "DEFAULT_RULES"]


_CODE_RE = re.compile(
    r"```|^\s*(def|class|import|from \S+ import|function|const|let|var|public|private|#include|SELECT|CREATE TABLE)\b"
    r"|\b(stack trace|traceback|segfault|compile error|refactor|unit tests?|regex|SQL query|bug in)\b"
    r"|[;{}]\s*$", re.MULTILINE | re.IGNORECASE)
_MATH_RE = re.compile(
    r"\\(frac|int|sum|sqrt|partial|lim|begin\{)|\$[^$\n]+\$|\b(prove|proof|theorem|lemma|derive|derivative|"
    r"integral|equation|eigen\w*|probability|combinatori\w*|matrix|optimi[sz]e the function)\b"
    r"|\d\s*[\^*/]\s*\d|[=<>]\s*-?\d+\s*[+\-*/]\s*\d", re.IGNORECASE)
_STEP_RE = re.compile(r"^\s*(\d+[.)]|[-*•]\s|step \d+)|\b(first|then|next|after that|finally|afterwards)\b",
                      re.MULTILINE | re.IGNORECASE)
_REASONING_RE = re.compile(
    r"\b(step[- ]by[- ]step|analy[sz]e|compare|trade-?offs?|evaluate|explain why|reason about|design an?|"
    r"architecture|plan (a|an|the)|strategy|pros and cons|critique|root cause|think carefully)\b", re.IGNORECASE)
_SIMPLE_RE = re.compile(
    r"\b(classify|categori[sz]e|label|sentiment|yes or no|true or false|extract|which language|"
    r"detect the language|tag (this|the)|spam or not|one word)\b", re.IGNORECASE)


class Estimate(msgspec.Struct, frozen=True):
    tier: int
    score: float
    reasons: tuple[str, ...]


def _clip(text: str, limit: int) -> str:
    """The head and the tail of a long text: where a prompt states its task."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n" + text[-half:]


def _text_of(content: Any, limit: int) -> str:
    if isinstance(content, str):
        return _clip(content, limit)
    if isinstance(content, list):
        return _clip("\n".join(p["text"] for p in content
                               if isinstance(p, dict) and isinstance(p.get("text"), str)), limit)
    return ""


# Cheap substring hints checked before each pattern (str.find runs at memory speed, the
# patterns do not): prose without any hint never pays for the pattern.
_CODE_HINTS = ("```", "def ", "class ", "import ", "function", "const ", "let ", "var ", "public ",
               "private ", "#include", "select ", "create table", "stack trace", "traceback", "segfault",
               "compile", "refactor", "unit test", "regex", "sql", "bug in", ";", "{", "}")
_MATH_HINTS = ("\\", "$", "prov", "proof", "theorem", "lemma", "deriv", "integral", "equation", "eigen",
               "probabil", "combinator", "matrix", "optimi", "^", "*", "/", "=", "<", ">")
_STEP_HINTS = ("1.", "1)", "- ", "* ", "\u2022", "step", "first", "then", "next", "after that", "finally",
               "afterwards")
_REASONING_HINTS = ("step", "analy", "compar", "trade", "evaluat", "explain why", "reason about", "design",
                    "architecture", "plan ", "strategy", "pros and cons", "critique", "root cause",
                    "think carefully")


def _hinted(lowered: str, hints: tuple[str, ...]) -> bool:
    for h in hints:
        if h in lowered:
            return True
    return False


def _k(n: float) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(int(n))


class ComplexityEstimator:
    """Built once from the config; `estimate(body, prompt_tokens)` per request."""

    def __init__(self, cfg: ComplexityConfig | None = None):
        cfg = cfg or ComplexityConfig()
        unknown = set(cfg.rules) - set(DEFAULT_RULES)
        if unknown:
            raise ValueError(f"unknown complexity rule {sorted(unknown)[0]!r}; known: {', '.join(DEFAULT_RULES)}")
        if any(b < a for a, b in zip(cfg.tiers, cfg.tiers[1:])) or len(cfg.tiers) != 4:
            raise ValueError("tiers must be 4 ascending score thresholds (for tiers 2, 3, 4, 5)")
        self.cfg = cfg
        self.rules = {**DEFAULT_RULES, **cfg.rules}
        self.extra = [(r.name, re.compile(r.pattern, re.IGNORECASE), r.weight) for r in cfg.extra]

    def tier_for(self, score: float) -> int:
        return 1 + sum(1 for t in self.cfg.tiers if score >= t)

    def estimate(self, body: dict, prompt_tokens: int) -> Estimate:
        rules = self.rules
        limit = self.cfg.scan_chars
        messages = body.get("messages") or []
        system, last_user = "", ""
        for msg in messages:
            if isinstance(msg, dict) and msg.get("role") in ("system", "developer"):
                system = _text_of(msg.get("content"), limit)
                break
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                last_user = _text_of(msg.get("content"), limit)
                break
        text = f"{system}\n{last_user}" if system else last_user
        lowered = text.lower()
        score = self.cfg.base
        reasons: list[str] = []

        def fire(name: str, reason: str) -> None:
            nonlocal score
            w = rules[name].weight
            if w:
                score += w
                reasons.append(reason)

        if prompt_tokens > rules["very_long_prompt"].above:
            fire("very_long_prompt", f"{_k(prompt_tokens)}-token prompt")
            fire("long_prompt", "long prompt")
        elif prompt_tokens > rules["long_prompt"].above:
            fire("long_prompt", f"{_k(prompt_tokens)}-token prompt")
        if _hinted(lowered, _CODE_HINTS) and _CODE_RE.search(text):
            fire("code", "code")
        if _hinted(lowered, _MATH_HINTS) and _MATH_RE.search(text):
            fire("math", "math")
        steps = len(_STEP_RE.findall(last_user)) if _hinted(lowered, _STEP_HINTS) else 0
        if steps >= rules["multi_step"].above:
            fire("multi_step", f"{steps} steps")
        if _hinted(lowered, _REASONING_HINTS) and _REASONING_RE.search(text):
            fire("reasoning", "reasoning")
        if len(messages) > rules["deep_conversation"].above:
            fire("deep_conversation", f"{len(messages)} messages")
        tools = body.get("tools")
        if tools and body.get("tool_choice") != "none":
            fire("tools", "tools")
        max_out = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_out, int) and max_out > rules["long_output"].above:
            fire("long_output", f"{_k(max_out)} max output")
        if not reasons and prompt_tokens < rules["simple_task"].above and _SIMPLE_RE.search(text):
            fire("simple_task", "simple task")
        for name, pattern, weight in self.extra:
            if weight and pattern.search(text):
                score += weight
                reasons.append(name)
        tier = self.tier_for(score)
        return Estimate(tier, round(score, 3), tuple(reasons) or ("plain request",))
