"""Empty answers in every common shape, one definition: the function, the cache column
`response_empty`, the census, both trace sources; and repeated (canned) answers."""

from __future__ import annotations

import json
import uuid

import mlflow
import pytest
from mlflow.entities import SpanType

from analytics.conftest import census_of, sql_of, tracking
from insights.analytics.answers import EMPTY_ANSWER_SQL, is_empty_answer


def _openai(content):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_1",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12}}


def _anthropic(text):
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}


def _ai_message(content):
    return {"content": content, "additional_kwargs": {}, "type": "ai", "name": None,
            "id": "run-1", "tool_calls": [], "invalid_tool_calls": [],
            "response_metadata": {"model_name": "gpt-4o", "finish_reason": "stop"},
            "usage_metadata": {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3}}


# (root span output as the app returns it, is it an empty answer?)
OUTPUTS = [
    ("", True), ("   ", True), (None, True), ({}, True), ([], True),
    ({"answer": ""}, True), ({"answer": {"text": " "}}, True),
    ({"answer": "", "confidence": 0.2, "cached": True}, True),
    (_openai(""), True), (_openai(None), True), (_anthropic("  "), True),
    (_ai_message(""), True),
    ({"messages": [{"type": "human", "content": "hi"}, _ai_message("")]}, True),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
     True),
    ([{"answer": ""}, _openai(" ")], True),
    (json.dumps({"answer": ""}), True),  # double-encoded JSON
    ("Paris", False), ({"answer": "Paris"}, False), (_openai("Paris"), False),
    (_anthropic("Paris"), False), (_ai_message("Paris"), False),
    ({"messages": [_ai_message(""), _ai_message("Paris")]}, False),
    ({"answer": {"text": "0"}}, False), (42, False), ("no", False),
]


@pytest.mark.parametrize("output, empty", OUTPUTS)
def test_empty_answer_in_every_common_shape(output, empty):
    text = None if output is None else json.dumps(output)
    assert is_empty_answer(text) is empty


def test_numbers_booleans_and_protocol_fields_are_not_text():
    assert is_empty_answer('{"score": 0.9, "ok": true, "usage": {"total_tokens": 5}}')
    assert is_empty_answer('{"id": "x", "model": "m", "role": "assistant", "answer": null}')
    assert is_empty_answer('{"request_id": "abc", "answer": ""}')
    assert not is_empty_answer('{"id": "x", "answer": "fine"}')
    assert not is_empty_answer("not json at all")
    assert is_empty_answer("") and is_empty_answer(None)


@mlflow.trace(name="app", span_type=SpanType.AGENT)
def _app(i: int, output):
    mlflow.update_current_trace(tags={"i": str(i)})
    return output


def _log_outputs(experiment_id: str) -> None:
    mlflow.set_experiment(experiment_id=experiment_id)
    for i, (output, _) in enumerate(OUTPUTS):
        _app(i, output)
    mlflow.flush_trace_async_logging()


def _empty_by_index(uri: str, exp: str) -> dict[int, bool]:
    rows = sql_of(uri, exp, "SELECT tags['i'], response_empty FROM traces").rows
    return {int(i): e for i, e in rows}


def test_response_empty_column_and_census_use_the_definition(fresh_store):
    uri, exp = fresh_store
    _log_outputs(exp)
    assert _empty_by_index(uri, exp) == {i: e for i, (_, e) in enumerate(OUTPUTS)}
    n_empty = sum(e for _, e in OUTPUTS)
    (count,) = sql_of(uri, exp, f"SELECT count(*) FROM traces WHERE {EMPTY_ANSWER_SQL} "
                                "AND tags['i'] IS NOT NULL").rows[0]
    assert count == n_empty
    c = census_of(uri, exp)
    assert c["responses"]["empty_responses"]["count"] == n_empty


def test_response_empty_of_an_errored_trace_is_not_an_empty_answer(fresh_store):
    uri, exp = fresh_store
    mlflow.set_experiment(experiment_id=exp)  # (it passed before on an id leaked by another test)

    @mlflow.trace(name="app")
    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        broken()
    mlflow.flush_trace_async_logging()
    assert sql_of(uri, exp, "SELECT state, response_empty, tags['x'] FROM traces").rows == [
        ["ERROR", True, None]]
    assert census_of(uri, exp)["responses"]["empty_responses"]["count"] == 0


@pytest.mark.server
def test_sqlite_and_server_sources_agree_on_response_empty(fresh_store, mlflow_server):
    uri, exp = fresh_store
    _log_outputs(exp)
    server_exp = mlflow.MlflowClient(mlflow_server.uri).create_experiment(
        f"answers-{uuid.uuid4().hex[:8]}")
    with tracking(mlflow_server.uri):
        _log_outputs(server_exp)
    on_sqlite = _empty_by_index(uri, exp)
    on_server = _empty_by_index(mlflow_server.uri, server_exp)
    assert on_sqlite == on_server == {i: e for i, (_, e) in enumerate(OUTPUTS)}


def test_repeated_canned_answers_are_census_facts(fresh_store):
    uri, exp = fresh_store
    mlflow.set_experiment(experiment_id=exp)
    canned = "Sorry, I cannot help with that."
    for i in range(40):
        if i < 12:
            _app(i, canned)  # 12 of 40 OK traces: >= 3% and >= 10
        elif i < 21:
            _app(i, "Please try again")  # 9 traces: under 10
        elif i < 24:
            _app(i, "")  # empty answers are never "repeated answers"
        else:
            _app(i, f"answer number {i}")
    mlflow.flush_trace_async_logging()
    c = census_of(uri, exp)
    (rep,) = c["responses"]["repeated_answers"]
    assert (rep["text"], rep["count"], rep["share"]) == (canned, 12, 0.3)
    ids = {r[0] for r in sql_of(uri, exp, "SELECT trace_id FROM traces WHERE response = "
                                          f"'{json.dumps(canned)}'").rows}
    assert len(ids) == 12 and 0 < len(rep["sample_trace_ids"]) <= 5
    assert set(rep["sample_trace_ids"]) <= ids
