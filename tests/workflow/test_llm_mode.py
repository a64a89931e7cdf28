"""The chat-model analyst with a scripted fake model: the tool loop tests what has no
executable plan, and the call budget is a hard cap."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import AIMessage

from agent.llm import MAX_TOOL_ROUNDS, ChatModelAnalyst
from tests.workflow.conftest import Store, offline_context, run_issues, stream_unattended
from tests.workflow.fake_models import (
    ScriptedChatModel, calls, structured, tool_call, tool_outputs, unquote,
)

QUALITY = "Replies to Spanish-speaking users are curt and skip the practical details"


def test_quality_hypothesis_without_plan_is_tested_by_the_tool_loop(small_store: Store,
                                                                    tmp_path: Path) -> None:
    cited: list[dict] = []

    def script(phase, messages, n):
        if phase == "describe":
            return AIMessage(content="A travel assistant that plans trips (written by the model).")
        if phase == "propose":
            return structured(hypotheses=[])
        assert phase == "test", phase
        outputs = tool_outputs(messages)
        if not outputs:
            return calls(tool_call("execute_sql", sql="SELECT trace_id, request FROM traces "
                                   "WHERE tags['locale'] = 'es' ORDER BY trace_id LIMIT 3"))
        if len(outputs) == 1:
            rows = unquote(outputs[0])["rows"]
            assert len(rows) == 3, outputs[0]
            cited[:] = [{"trace_id": rows[0][0], "rationale": "curt reply, no hotel details",
                         "supports": True},
                        {"trace_id": rows[1][0], "rationale": "complete, friendly reply",
                         "supports": False}]
            return calls(*[tool_call("record_evidence", **c) for c in cited])
        return calls(tool_call("set_verdict", status="validated",
                               reason="2 of 3 sampled replies were curt (model's reading)"))

    model = ScriptedChatModel(script=script)
    analyst = ChatModelAnalyst(model, max_calls=30)
    ctx = offline_context(small_store, analyst=analyst, auto_answer=True, report_dir=str(tmp_path),
                          answers={"review_hypotheses": {"add_hypotheses": [{"statement": QUALITY}]}})
    state, _ = stream_unattended(small_store, ctx, {"experiment_id": small_store.experiment_id})
    run_id = state["run_id"]
    client = small_store.client()

    assert client.get_analysis(run_id).status.value == "COMPLETED"
    assert client.get_analysis(run_id).metadata["agent_description"].endswith("(written by the model).")
    (h,) = [h for h in client.list_hypotheses(run_id) if h.statement == QUALITY]
    assert "plan" not in h.metadata
    assert h.status.value == "VALIDATED"
    assert h.metadata["verdict_reason"] == "2 of 3 sampled replies were curt (model's reading)"
    got = [{"trace_id": e.trace_id, "rationale": e.rationale, "supports": e.supports} for e in h.evidence]
    assert got == cited
    assert {c["trace_id"] for c in cited} <= set(client.linked_trace_ids(run_id, max_results=10_000))
    issue = [i for i in run_issues(client, small_store.experiment_id, run_id)
             if i.hypothesis_id == h.hypothesis_id]
    assert len(issue) == 1 and set(issue[0].trace_ids) == {cited[0]["trace_id"]}
    # describe + propose + three tool rounds; the mined hypotheses never reach the model
    assert len(model.received) == 5
    assert analyst.usage()["model_calls"] == 5
    assert all(h.metadata.get("verdict_reason") for h in client.list_hypotheses(run_id)
               if h.status.value != "TESTING" and not h.metadata.get("abandoned_by"))


def test_call_budget_is_never_exceeded_and_the_run_completes(small_store: Store, tmp_path: Path) -> None:
    proposals = [{"statement": f"Quality problem {k}: answers miss details", "rationale": "r",
                  "testing_plan": "Step 1: read replies. Step 2: decide."} for k in range(3)]

    def endless(phase, messages, n):
        if phase == "propose":
            return structured(hypotheses=proposals)
        # describe and testing: always one more query, never a verdict
        return calls(tool_call("execute_sql", sql="SELECT count(*) AS n FROM traces"))

    model = ScriptedChatModel(script=endless)
    analyst = ChatModelAnalyst(model, max_calls=30)
    extra = [{"statement": f"Person's quality worry {k}"} for k in range(2)]
    ctx = offline_context(small_store, analyst=analyst, auto_answer=True, report_dir=str(tmp_path),
                          answers={"review_hypotheses": {"add_hypotheses": extra}})
    # 2 + (3 model + 2 person hypotheses) * MAX_TOOL_ROUNDS calls would be wanted
    assert 2 + 5 * MAX_TOOL_ROUNDS > 30
    state, _ = stream_unattended(small_store, ctx, {"experiment_id": small_store.experiment_id})

    assert len(model.received) <= 30, f"the model was invoked {len(model.received)} times"
    assert len(model.received) == 30
    usage = analyst.usage()
    assert usage["model_calls"] <= 30 and usage["max_model_calls"] == 30
    client = small_store.client()
    run_id = state["run_id"]
    assert client.get_analysis(run_id).status.value == "COMPLETED"
    unplanned = [h for h in client.list_hypotheses(run_id) if "plan" not in h.metadata]
    assert len(unplanned) == 5
    for h in unplanned:  # no verdict from the model: left untested, never guessed
        assert h.status.value == "TESTING" and h.metadata.get("untestable"), (h.statement, h.status)
    assert "Model usage: 30 calls" in Path(state["report_path"]).read_text()
