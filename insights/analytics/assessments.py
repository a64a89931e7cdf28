"""What counts as a failing assessment value: one definition for the census and the analyst.

Why one place: the census's ``failing`` counts and the analyst's "failed the X assessment"
outcomes must agree, or an issue raised from the census is not found again when tested.
A value fails when, lower-cased and trimmed, it is one of ``FAILING_VALUES`` (booleans, yes/no
answers, pass/fail verdicts and zero scores). Values are compared as text because MLflow
stores every assessment value as JSON text.
"""

from __future__ import annotations

FAILING_VALUES: tuple[str, ...] = (
    "false", "no", "n", "fail", "failed", "failure", "0", "0.0", "bad", "negative", "incorrect",
)


def is_failing(value: object) -> bool:
    """True when ``value`` (an assessment value as text) is a failing verdict."""
    return value is not None and str(value).strip().lower() in FAILING_VALUES


def failing_predicate(expr: str) -> str:
    """SQL (Spark and DuckDB alike) that is true when ``expr`` holds a failing value.

    ``expr`` is SQL written by the caller (a column or struct field), never user text; the
    values are this module's constants.
    """
    values = ", ".join("'" + v.replace("'", "''") + "'" for v in FAILING_VALUES)
    return f"lower(trim({expr})) IN ({values})"
