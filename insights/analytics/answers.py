"""What counts as an empty answer: one definition for the cache, the census and the analyst.

The answer of a trace is its root span's output, stored by MLflow as JSON text. It is empty
when it is missing, or when every *text leaf* in it is empty or whitespace. Shapes read:

- plain values: ``""``, ``null``, ``{}``, ``[]``, ``{"answer": ""}``, ``{"answer": {"text": " "}}``;
- an OpenAI chat completion (``choices``): only each choice's ``message.content`` /
  ``delta.content`` / ``text`` is text;
- a chat message (a dict with ``content`` and a ``role``, or a LangChain message ``type``
  such as ``ai``; LangChain's serialised ``{"lc": 1, "kwargs": {...}}`` form too): only its
  ``content`` is text, whether a string or a list of content blocks (Anthropic / OpenAI
  ``{"type": "text", "text": ...}``);
- a ``{"messages": [...]}`` state (LangGraph): only the LAST message is the answer;
- a list of any of these: empty when every item is empty.

Numbers and booleans are not text (scores, counts, flags), and values under protocol or
structural keys (``STRUCTURAL_KEYS``: role, model, id, object, finish_reason, usage, index,
created, type...; any key naming an identifier, ``*_id``) are not part of the answer. A bare
top-level number or boolean is an answer (a calculator's ``42``). A string that itself holds
JSON (a double-encoded output) is read as that JSON. No word list decides emptiness: a
non-empty text is an answer, whatever it says.

In SQL, the cache computes this once per trace: ``trace_rows.response_empty`` and the column
``response_empty`` of Trace SQL's ``traces`` table. An empty-answer outcome is
``EMPTY_ANSWER_SQL`` (``state = 'OK' AND response_empty``).
"""

from __future__ import annotations

import json
from typing import Any

EMPTY_ANSWER_SQL = "state = 'OK' AND response_empty"
UDF_NAME = "insights_is_empty_answer"

# Keys whose values are protocol fields, never the answer's text.
STRUCTURAL_KEYS = frozenset({
    "role", "model", "model_name", "id", "object", "finish_reason", "stop_reason",
    "stop_sequence", "usage", "usage_metadata", "response_metadata", "index", "created",
    "created_at", "type", "system_fingerprint", "logprobs", "status", "service_tier",
    "additional_kwargs", "lc", "token_usage", "prompt_tokens", "completion_tokens",
    "total_tokens", "input_tokens", "output_tokens",
})
# LangChain message ``type`` values (and class names) that mark a dict as a chat message.
MESSAGE_TYPES = frozenset({"ai", "human", "system", "tool", "function", "chat", "assistant",
                           "user", "message", "aimessage", "humanmessage", "systemmessage",
                           "toolmessage", "aimessagechunk"})
_MAX_DEPTH = 40


def is_empty_answer(text: str | None) -> bool:
    """True when a root span output (JSON text, as MLflow stores it) holds no answer text."""
    if text is None:
        return True
    if not isinstance(text, str):
        return _empty(text, 0, top=True)
    stripped = text.strip()
    if not stripped:
        return True
    try:
        value = json.loads(stripped)
    except ValueError:
        return False  # plain text that is not JSON, and not blank
    return _empty(value, 0, top=True)


def _empty(value: Any, depth: int, top: bool = False) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if value is None:
        return True
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return not top  # not text inside a structure; a bare number is an answer
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return True
        if s[0] in "{[\"" and s[-1] in "}]\"":  # double-encoded JSON
            try:
                inner = json.loads(s)
            except ValueError:
                return False
            if isinstance(inner, (dict, list, str)) or inner is None:
                return _empty(inner, depth + 1)
        return False
    if isinstance(value, list):
        return all(_empty(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return _empty_dict(value, depth)
    return not str(value).strip()


def _empty_dict(d: dict, depth: int) -> bool:
    if d.get("lc") is not None and isinstance(d.get("kwargs"), dict):  # LangChain serialised
        return _empty(d["kwargs"], depth + 1)
    messages = d.get("messages")
    if isinstance(messages, list):  # a graph state: the last message is the answer
        return _empty(messages[-1], depth + 1) if messages else True
    choices = d.get("choices")
    if isinstance(choices, list):  # an OpenAI (chat) completion
        return all(_empty(_choice_text(c), depth + 1) for c in choices)
    if "content" in d and _is_message(d):
        return _empty(d["content"], depth + 1)
    return all(_empty(v, depth + 1) for k, v in d.items() if not _structural(k))


def _choice_text(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return choice
    for key in ("message", "delta"):
        if isinstance(choice.get(key), dict):
            return choice[key].get("content")
    return choice.get("text")


def _is_message(d: dict) -> bool:
    kind = d.get("type")
    return "role" in d or (isinstance(kind, str) and kind.lower() in MESSAGE_TYPES)


def _structural(key: Any) -> bool:
    k = str(key).lower()
    return k in STRUCTURAL_KEYS or k.endswith("_id")


def register(con) -> str:
    """Make ``is_empty_answer`` callable as ``insights_is_empty_answer(text)`` on a DuckDB
    connection (once per connection); returns the function name."""
    import duckdb

    try:
        con.create_function(UDF_NAME, is_empty_answer, ["VARCHAR"], "BOOLEAN",
                            null_handling="special", side_effects=False)
    except (duckdb.NotImplementedException, duckdb.CatalogException):
        pass   # already registered on this connection (DuckDB raises either, by version)
    return UDF_NAME
