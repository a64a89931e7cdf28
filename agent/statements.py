"""A person's free-text hypothesis, mapped onto what the offline analyst can measure.

The offline analyst tests a hypothesis by comparing a cohort of traces with the rest on one
outcome (``agent.plans``). A statement typed by a person is mapped onto that vocabulary only by
what it names of the traces' generic structure, never by guessing:

- outcome: error words (error, fail, exception...), slowness words (slow, latency, timeout...),
  empty-answer words, or the name of an assessment present in the census (a failing value);
- cohort: span names and span types present in the census, trace tags (``key=value``, or a tag
  key and one of its values both named), long or short requests, a time window written as
  ISO dates, and words quoted in the statement (requests containing them).

Everything recognised is listed in ``Mapping.matched`` so the person can check it before the
plan is used; a statement missing an outcome or a cohort is untestable offline, with a reason
that lists what could have been named.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from agent.frame import EMPTY_RESPONSES, FAILING_VALUES, quote, sql_list
from agent.plans import Plan

ERROR_WORDS = r"errors?|fail\w*|exceptions?|crash\w*|broken|break\w*"
SLOW_WORDS = r"slow\w*|latency|latencies|time ?outs?|timed out|delay\w*|takes? (?:too )?long"
EMPTY_WORDS = r"empty|blank|no (?:answer|response|reply|output)s?"
LONG_REQUEST = re.compile(r"\blong(?:er)? (?:requests?|inputs?|prompts?|questions?|messages?)\b"
                          r"|\b(?:requests?|inputs?|prompts?|questions?|messages?) (?:are|is) long")
SHORT_REQUEST = re.compile(r"\bshort(?:er)? (?:requests?|inputs?|prompts?|questions?|messages?)\b"
                           r"|\b(?:requests?|inputs?|prompts?|questions?|messages?) (?:are|is) short")
WHEN = re.compile(r"\b(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}))?")
QUOTED = re.compile(r"'([^']{2,60})'|\"([^\"]{2,60})\"|`([^`]{2,60})`")
TAG_PAIR = re.compile(r"([A-Za-z_][\w.\-]*)\s*=\s*([\w.\-]+)")
SPAN_TYPE_WORDS = {"TOOL": r"tools?", "RETRIEVER": r"retriev\w*", "LLM": r"llms?",
                   "CHAT_MODEL": r"chat models?", "EMBEDDING": r"embedding\w*",
                   "RERANKER": r"rerank\w*", "PARSER": r"pars(?:er|ing)", "AGENT": r"agents?"}
MAX_TAG_VALUES = 20


@dataclass
class Mapping:
    """A plan and what it was built from, or why no plan could be built."""

    plan: Plan | None
    matched: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class _Part:
    label: str
    sql: str
    position: int
    scope_sql: str | None = None


def map_statement(statement: str, census: Any, tags: dict[str, set[str]] | None = None) -> Mapping:
    """Map ``statement`` onto an executable plan, or say why it cannot be tested offline.

    ``census`` is the analysis's baseline census (a dict or a model with ``model_dump``);
    ``tags`` maps each trace tag key to the values seen.
    """
    data = census.model_dump() if hasattr(census, "model_dump") else dict(census or {})
    text = " ".join(statement.lower().split())
    outcomes = _outcomes(text, data)
    cohort = _cohort_parts(statement, text, data, tags or {})
    if not outcomes:
        return Mapping(None, [f"cohort: {p.label}" for p in cohort], reason=(
            "no outcome the offline analyst can measure is named (errors, slow traces, empty "
            "responses" + _assessment_hint(data) + ")"))
    if not cohort:
        return Mapping(None, [f"outcome: {o.label}" for o in outcomes], reason=(
            "no group of traces the offline analyst can select is named: name a span "
            + _span_hint(data) + ", a tag as key=value" + _tag_hint(tags or {})
            + ", long or short requests, a time window as ISO dates, or quote a request word"))
    outcome = min(outcomes, key=lambda o: o.position)
    label = " and ".join(p.label for p in cohort)
    where = " AND ".join(f"({p.sql})" for p in cohort)
    scope = f" AND {outcome.scope_sql}" if outcome.scope_sql else ""
    plan = Plan(cohort=f"{where}{scope}" if scope else where,
                control=f"NOT ({where}){scope}", outcome=outcome.sql, cohort_label=label,
                control_label="the other " + ("assessed " if scope else "") + "traces",
                outcome_label=outcome.label, split="all")
    matched = [f"cohort: {p.label}" for p in cohort] + [f"outcome: {outcome.label}"]
    others = [o.label for o in outcomes if o is not outcome]
    if others:
        matched.append("also named, not used: " + ", ".join(others))
    return Mapping(plan, matched)


def _outcomes(text: str, census: dict[str, Any]) -> list[_Part]:
    found = []
    named_assessment = False
    for a in census.get("assessments") or []:
        name = str(a.get("name") or "")
        pos = _find_name(text, name)
        if pos is not None:
            q = quote(name)
            found.append(_Part(f"failed {q} assessments",
                               f"exists(assessments, a -> a.name = {q} AND lower(a.value) IN "
                               f"({sql_list(FAILING_VALUES)}))", pos,
                               scope_sql=f"exists(assessments, a -> a.name = {q})"))
            named_assessment = True
    if not named_assessment and (m := re.search(rf"\b(?:{ERROR_WORDS})\b", text)):
        found.append(_Part("errors", "state = 'ERROR'", m.start()))
    if m := re.search(rf"\b(?:{SLOW_WORDS})\b", text):
        p90 = ((census.get("latency_ms") or {}).get("all") or {}).get("p90")
        if p90:
            found.append(_Part(f"slow traces (over {p90 / 1000:.1f} s, the 90th percentile)",
                               f"execution_time_ms > {int(p90)}", m.start()))
    if m := re.search(rf"\b(?:{EMPTY_WORDS})\b", text):
        found.append(_Part("empty responses", "state = 'OK' AND coalesce(trim(response), '') "
                           f"IN ({sql_list(EMPTY_RESPONSES)})", m.start()))
    return found


def _cohort_parts(statement: str, text: str, census: dict[str, Any],
                  tags: dict[str, set[str]]) -> list[_Part]:
    parts: list[_Part] = []
    used: set[str] = set()
    spans = census.get("spans") or []
    for s in spans:
        name = str(s.get("name") or "")
        pos = _find_name(text, name)
        if pos is not None and name.lower() not in used:
            used.add(name.lower())
            parts.append(_Part(f"traces with a {quote(name)} span",
                               f"exists(spans, s -> s.name = {quote(name)})", pos))
    if not parts:
        types = {str(s.get("span_type") or "") for s in spans}
        for span_type, words in SPAN_TYPE_WORDS.items():
            m = re.search(rf"\b(?:{words})\b", text)
            if span_type in types and m:
                parts.append(_Part(f"traces with a {span_type} span",
                                   f"exists(spans, s -> s.span_type = {quote(span_type)})", m.start()))
    parts += _tag_parts(statement, text, tags, used)
    if m := LONG_REQUEST.search(text):
        p90 = _request_length(census, "p90")
        if p90:
            parts.append(_Part(f"requests longer than {int(p90)} characters (the longest 10%)",
                               f"length(request) > {int(p90)}", m.start()))
    if m := SHORT_REQUEST.search(text):
        p25 = _request_length(census, "p25")
        if p25:
            parts.append(_Part(f"requests shorter than {int(p25)} characters (the shortest 25%)",
                               f"length(request) < {int(p25)}", m.start()))
    parts += _window_parts(text)
    for m in QUOTED.finditer(statement):
        word = next(g for g in m.groups() if g)
        if word.lower() in used:
            continue
        used.add(word.lower())
        parts.append(_Part(f"requests containing {quote(word)}",
                           f"lower(request) LIKE {quote('%' + word.lower() + '%')}", m.start()))
    return sorted(parts, key=lambda p: p.position)


def _tag_parts(statement: str, text: str, tags: dict[str, set[str]], used: set[str]) -> list[_Part]:
    parts = []
    for m in TAG_PAIR.finditer(statement):
        key, value = m.group(1), m.group(2)
        if key in tags and value in tags[key]:
            used.update({key.lower(), value.lower()})
            parts.append(_Part(f"traces tagged {key}={value}",
                               f"tags[{quote(key)}] = {quote(value)}", m.start()))
    for key, values in sorted(tags.items()):
        if key.lower() in used or _find_name(text, key) is None:
            continue
        named = [v for v in sorted(values) if _find_name(text, v) is not None]
        if len(named) == 1:
            used.update({key.lower(), named[0].lower()})
            parts.append(_Part(f"traces tagged {key}={named[0]}",
                               f"tags[{quote(key)}] = {quote(named[0])}", _find_name(text, key)))
    return parts


def _window_parts(text: str) -> list[_Part]:
    stamps = [(m.start(), _ms(m.group(1), m.group(2))) for m in WHEN.finditer(text)]
    stamps = [(pos, ms) for pos, ms in stamps if ms is not None]
    if len(stamps) >= 2:
        (pos, lo), (_, hi) = stamps[0], stamps[1]
        lo, hi = min(lo, hi), max(lo, hi)
        if hi == lo:
            hi += 86_400_000
        return [_Part(f"traces between {_utc(lo)} and {_utc(hi)} UTC",
                      f"request_time_ms >= {lo} AND request_time_ms < {hi}", pos)]
    if len(stamps) == 1:
        pos, at = stamps[0]
        before = re.search(r"\b(?:before|until|up to)\s*$", text[:pos])
        if before:
            return [_Part(f"traces before {_utc(at)} UTC", f"request_time_ms < {at}", pos)]
        if re.search(r"\b(?:after|since|from)\s*$", text[:pos]):
            return [_Part(f"traces from {_utc(at)} UTC", f"request_time_ms >= {at}", pos)]
        return [_Part(f"traces on {_utc(at)[:10]} UTC",
                      f"request_time_ms >= {at} AND request_time_ms < {at + 86_400_000}", pos)]
    return []


def _ms(day: str, clock: str | None) -> int | None:
    try:
        when = dt.datetime.fromisoformat(f"{day}T{clock or '00:00'}").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    return int(when.timestamp() * 1000)


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _find_name(text: str, name: str) -> int | None:
    """Where ``name`` (or it with '_'/'-' read as spaces) stands as a whole word in ``text``."""
    name = name.strip().lower()
    if len(name) < 2:
        return None
    for variant in dict.fromkeys([name, re.sub(r"[_\-]+", " ", name)]):
        m = re.search(rf"(?<![\w]){re.escape(variant)}(?![\w])", text)
        if m:
            return m.start()
    return None


def _request_length(census: dict[str, Any], key: str) -> float | None:
    dist = (census.get("responses") or {}).get("request_length") or {}
    return dist.get(key)


def _assessment_hint(census: dict[str, Any]) -> str:
    names = [str(a.get("name")) for a in census.get("assessments") or [] if a.get("name")]
    return f", or a failing assessment: {', '.join(names[:8])}" if names else ""


def _span_hint(census: dict[str, Any]) -> str:
    names = [str(s.get("name")) for s in census.get("spans") or [] if s.get("name")]
    return f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names else ""


def _tag_hint(tags: dict[str, set[str]]) -> str:
    if not tags:
        return ""
    shown = [f"{k}={'/'.join(sorted(v)[:4])}" for k, v in sorted(tags.items())[:4]]
    return f" ({', '.join(shown)})"


def tag_values(frame) -> dict[str, set[str]]:
    """Low-cardinality trace tags from a ``TraceFrame``: the segments a statement may name."""
    values: dict[str, set[str]] = {}
    for tags in frame.tags:
        for key, value in tags.items():
            values.setdefault(key, set()).add(str(value))
    return {k: v for k, v in values.items() if len(v) <= MAX_TAG_VALUES}
