"""What counts as a failing assessment value: one definition for the census and the analyst.

Why one place: the census's ``failing`` counts and the analyst's "failed the X assessment"
outcomes must agree, or an issue raised from the census is not found again when tested.

Each assessment name is judged on its own terms: ``read_scales`` reads the values logged
under each name and infers its scale (``AssessmentScale``). Values are compared as text,
because MLflow stores every assessment value as JSON text: a value is *normalised* by
dropping backslashes, trimming, lower-casing and dropping surrounding double quotes (so
``True``, ``"no"`` and the JSON-quoted ``"\\"no\\""`` read as ``true`` and ``no``). The rules, in order:

- **verdict** (kind ``bool``, ``yes/no``, ``pass/fail``, or ``verdict`` when they are mixed):
  every value is one of true/false, yes/y/no/n, pass/passed/fail/failed/failure. Fails on
  false, no, n, fail, failed, failure.
- **numeric score**: every value is a number. The scale is read from the data:
  all values in [0, 1] -> scale 0-1; all in [-1, 1] with a negative one -> scale -1..1;
  otherwise, when all lie in [0, 100], the scale runs from 0 (when a 0 or a fraction is seen,
  else 1) to the smallest of 5, 10, 100 that holds the largest value (integer 1-5 ratings ->
  1-5). A value fails **below the scale's midpoint**: < 0.5 on 0-1, <= 2 on 1-5 (< 3),
  < 5.5 on 1-10, < 50 on 0-100, < 0 on -1..1. Numbers outside [-1, 100] are measurements
  (latencies, counts): kind ``numeric`` with no failing value.
- **categorical**: anything else. Observed values found in the protocol list
  ``FAILING_CATEGORIES`` (fail, failed, incorrect, bad, unsafe, ...) fail; when none is
  found the assessment has no failing value and is reported as a value distribution.

``failing_predicate`` / ``is_failing`` keep the name-blind rule of earlier versions (the
normalised value is one of ``FAILING_VALUES``) for callers without scales.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FAILING_VALUES: tuple[str, ...] = (
    "false", "no", "n", "fail", "failed", "failure", "0", "0.0", "bad", "negative", "incorrect",
)
# Verdict vocabularies: (kind, passing words, failing words).
VERDICTS: tuple[tuple[str, frozenset, frozenset], ...] = (
    ("bool", frozenset({"true"}), frozenset({"false"})),
    ("yes/no", frozenset({"yes", "y"}), frozenset({"no", "n"})),
    ("pass/fail", frozenset({"pass", "passed"}), frozenset({"fail", "failed", "failure"})),
)
FAILING_CATEGORIES: frozenset[str] = frozenset(FAILING_VALUES) | {
    "unsafe", "wrong", "error", "harmful", "toxic", "invalid", "rejected", "poor",
    "unsatisfied", "unhelpful", "irrelevant", "not_relevant", "not relevant",
}
SCALE_TOPS = (5, 10, 100)
# Trace SQL: every (name, value, count) logged, what read_scales() reads.
SCALES_SQL = ("SELECT a.name, a.value, count(*) AS n FROM traces "
              "LATERAL VIEW explode(assessments) y AS a GROUP BY a.name, a.value")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_QUOTED = re.compile(r'"*(.*?)"*')


def normalize(value: object) -> str:
    """The text a value is judged by: backslashes dropped, trimmed, lower-cased, surrounding
    quotes dropped.

    Same as ``normalize_sql`` (spaces only are trimmed, as SQL's trim does).
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value)
    m = _QUOTED.fullmatch(value.replace("\\", "").strip(" ").lower())
    return m.group(1).strip(" ") if m else ""


def normalize_sql(expr: str) -> str:
    """SQL (Trace SQL's Spark dialect and DuckDB alike) of ``normalize(expr)``."""
    return f"trim(regexp_extract(lower(trim(replace({expr}, chr(92), ''))), '^\"*(.*?)\"*$', 1))"


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values))


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


@dataclass(frozen=True)
class AssessmentScale:
    """How one assessment name's values are read, and which of them fail."""

    name: str
    kind: str  # bool | yes/no | pass/fail | verdict | numeric | categorical
    rule: str  # the rule in words, as the census shows it
    threshold: float | None = None  # numeric: a value fails below it
    low: float | None = None  # numeric: the scale's bounds
    high: float | None = None
    failing_values: tuple[str, ...] = field(default=())  # verdict/categorical, normalised

    @property
    def has_failing(self) -> bool:
        return self.threshold is not None or bool(self.failing_values)

    def is_failing(self, value: object) -> bool:
        """True when ``value`` (as logged, JSON text or plain) fails on this scale."""
        if value is None:
            return False
        text = normalize(value)
        if self.threshold is not None:
            n = _float(text)
            return n is not None and n < self.threshold
        return text in self.failing_values

    def failing_sql(self, value_sql: str) -> str:
        """A SQL predicate (Trace SQL and DuckDB) true when ``value_sql`` fails on this scale.

        ``value_sql`` is SQL written by the caller (a column or struct field), never user
        text; the literals are this scale's own, quoted.
        """
        if self.threshold is not None:
            return f"(TRY_CAST({normalize_sql(value_sql)} AS DOUBLE) < {self.threshold!r})"
        if self.failing_values:
            return f"({normalize_sql(value_sql)} IN ({_sql_list(self.failing_values)}))"
        return "FALSE"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "threshold": self.threshold,
                "low": self.low, "high": self.high, "failing_values": list(self.failing_values)}

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> "AssessmentScale":
        return cls(name=name, kind=d.get("kind", "categorical"), rule=d.get("rule", ""),
                   threshold=d.get("threshold"), low=d.get("low"), high=d.get("high"),
                   failing_values=tuple(d.get("failing_values") or ()))


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def infer_scale(name: str, values: dict[str, int] | Iterable[object]) -> AssessmentScale:
    """The scale of one assessment name from the values logged under it (see module doc)."""
    seen = {normalize(v) for v in values if v is not None} - {""}
    if not seen:
        return AssessmentScale(name, "categorical", "no values logged")
    for kind, good, bad in VERDICTS:
        if seen <= good | bad:
            return AssessmentScale(name, kind, f"fails on {' / '.join(sorted(bad))}",
                                   failing_values=tuple(sorted(bad)))
    every_good = frozenset().union(*(g for _, g, _ in VERDICTS))
    every_bad = frozenset().union(*(b for _, _, b in VERDICTS))
    if seen <= every_good | every_bad:
        return AssessmentScale(name, "verdict", f"fails on {' / '.join(sorted(every_bad))}",
                               failing_values=tuple(sorted(every_bad)))
    numbers = [_number(v) for v in seen]
    if all(n is not None and math.isfinite(n) for n in numbers):
        return _numeric_scale(name, numbers)
    bad = tuple(sorted(seen & FAILING_CATEGORIES))
    if bad:
        return AssessmentScale(name, "categorical", f"fails on {' / '.join(bad)}",
                               failing_values=bad)
    return AssessmentScale(name, "categorical", "no failing value: reported as a distribution")


def _numeric_scale(name: str, numbers: list[float]) -> AssessmentScale:
    lo, hi = min(numbers), max(numbers)
    if lo >= 0 and hi <= 1:
        low, high = 0.0, 1.0
    elif lo >= -1 and hi <= 1:
        low, high = -1.0, 1.0
    elif lo >= 0 and hi <= 100:
        whole = all(n.is_integer() for n in numbers)
        low = 1.0 if whole and lo >= 1 else 0.0
        high = float(next(t for t in SCALE_TOPS if hi <= t))
    else:
        return AssessmentScale(name, "numeric",
                               f"measurement ({lo:g} to {hi:g}): no failing value")
    mid = (low + high) / 2
    return AssessmentScale(name, "numeric", f"score on {low:g}-{high:g}: fails below {mid:g}",
                           threshold=mid, low=low, high=high)


def read_scales(rows: Any) -> dict[str, AssessmentScale]:
    """Each assessment name's scale from rows (name, value) or (name, value, count).

    ``rows`` may be an iterable of tuples or a Trace SQL result (``.rows``), e.g. of
    ``SCALES_SQL``.
    """
    by_name: dict[str, dict[str, int]] = {}
    for row in getattr(rows, "rows", rows):
        name, value = row[0], row[1]
        counts = by_name.setdefault(name, {})
        if value is not None:
            counts[str(value)] = counts.get(str(value), 0) + (row[2] if len(row) > 2 else 1)
    return {name: infer_scale(name, counts) for name, counts in by_name.items()}


def failing_sql_by_name(scales: dict[str, AssessmentScale], struct: str = "a") -> str:
    """A predicate over an assessment struct (``a.name``, ``a.value``): true when it fails on
    its own name's scale; names without a scale use ``failing_predicate``."""
    known = [f"({struct}.name = '{n.replace(chr(39), chr(39) * 2)}' AND "
             f"{s.failing_sql(f'{struct}.value')})" for n, s in sorted(scales.items())]
    other = (f"({struct}.name NOT IN ({_sql_list(scales)}) AND "
             f"{failing_predicate(f'{struct}.value')})") if scales else \
        failing_predicate(f"{struct}.value")
    return "(" + " OR ".join([*known, other]) + ")"


def is_failing(value: object) -> bool:
    """Name-blind rule: True when the normalised ``value`` is one of ``FAILING_VALUES``."""
    return value is not None and normalize(value) in FAILING_VALUES


def failing_predicate(expr: str) -> str:
    """SQL (Spark and DuckDB alike) that is true when ``expr`` holds a value of
    ``FAILING_VALUES`` (the name-blind rule; see ``AssessmentScale.failing_sql``).

    ``expr`` is SQL written by the caller (a column or struct field), never user text; the
    values are this module's constants.
    """
    return f"{normalize_sql(expr)} IN ({_sql_list(FAILING_VALUES)})"
