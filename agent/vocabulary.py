"""The analyst's vocabulary: outcomes (what went wrong), features (what traces have), and the
candidates pairing them. Each is both a numpy mask over a ``TraceFrame`` (for the screen) and
a Trace SQL predicate (for the executable plan), and the two select the same traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Outcome:
    key: str
    label: str          # "end in an error" (a verb phrase for statements)
    noun: str           # "errors"
    sql: str
    mask: np.ndarray
    scope_sql: str | None = None   # compare only traces where the outcome can happen
    scope: np.ndarray | None = None
    kind: str = ""                 # error, slow, empty, assessment, span_error, span_slow, ...
    title: str = ""                # the mechanism, for issue titles: "Tool 'x' fails with AuthError"
    detail: dict = field(default_factory=dict)


@dataclass
class Feature:
    key: str
    kind: str
    label: str          # "traces that call the `search` tool"
    sql: str
    mask: np.ndarray
    detail: dict = field(default_factory=dict)
    phrase: str = ""    # the condition, for issue titles: "for tier=trial"


@dataclass
class Candidate:
    outcome: Outcome
    feature: Feature
    events: int
    n: int
    control_events: int
    control_n: int
    p_value: float
    ratio: float
    exclude: list[str] = field(default_factory=list)
    within: list[str] = field(default_factory=list)


def span_kind(span_type: str) -> str:
    """'Tool', 'Retriever', 'Chat model', ... for titles; custom types as they are."""
    names = {"TOOL": "Tool", "RETRIEVER": "Retriever", "RERANKER": "Reranker", "AGENT": "Agent",
             "CHAT_MODEL": "Chat model", "LLM": "LLM", "EMBEDDING": "Embedding model",
             "PARSER": "Parser", "CHAIN": "Chain", "UNKNOWN": "Span", "": "Span"}
    return names.get(span_type or "", (span_type or "Span").replace("_", " ").capitalize())
