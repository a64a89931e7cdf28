"""The model budget survives resume (issue 10, item 9): calls and tokens spent are kept in the
analysis metadata, a resumed run starts its budget from them, so ``--max-model-calls N`` is N
for the whole analysis, and the report counts every call."""

from __future__ import annotations

import uuid
from pathlib import Path

from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agent.llm import MAX_TOOL_ROUNDS, ChatModelAnalyst
from tests.workflow.conftest import Store, offline_context
from tests.workflow.fake_models import ScriptedChatModel, calls, structured, tool_call
from workflows.analyze_experiment import build_graph

BUDGET = 9
TOKENS_PER_CALL = 7
PROPOSALS = [{"statement": f"Quality problem {k}: answers miss details", "rationale": "r",
              "testing_plan": "Step 1: read replies. Step 2: decide."} for k in range(3)]


def _endless(phase, messages, n) -> AIMessage:
    """Describes, proposes three unplanned hypotheses, then queries forever without a verdict."""
    if phase == "describe":
        reply = AIMessage(content="An application (described by the model).")
    elif phase == "propose":
        reply = structured(hypotheses=PROPOSALS)
    else:
        reply = calls(tool_call("execute_sql", sql="SELECT count(*) AS n FROM traces"))
    reply.usage_metadata = {"input_tokens": 5, "output_tokens": 2, "total_tokens": TOKENS_PER_CALL}
    return reply


def _first_part(store: Store) -> tuple[ScriptedChatModel, InMemorySaver, dict, str]:
    """Run until the hypotheses review pauses: the model has described and proposed."""
    model = ScriptedChatModel(script=_endless)
    saver = InMemorySaver()
    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    ctx = offline_context(store, analyst=ChatModelAnalyst(model, max_calls=BUDGET),
                          answers={"confirm_description": {}, "choose_focus": {}})
    graph = build_graph(checkpointer=saver)
    graph.invoke({"experiment_id": store.experiment_id}, config, context=ctx)
    (pending,) = graph.get_state(config).interrupts
    assert pending.value["kind"] == "review_hypotheses"
    run_id = graph.get_state(config).values["run_id"]
    assert len(model.received) == 2
    usage = store.client().get_analysis(run_id).metadata["model_usage"]
    assert usage == {"model_calls": 2, "tokens": 2 * TOKENS_PER_CALL}
    # what the rest would want, unbounded: a tool loop per proposed hypothesis
    assert 2 + len(PROPOSALS) * MAX_TOOL_ROUNDS > BUDGET
    return model, saver, config, run_id


def _check_totals(store: Store, run_id: str, models: list[ScriptedChatModel], report: Path) -> None:
    total = sum(len(m.received) for m in models)
    assert total == BUDGET, f"{total} model calls in all for a budget of {BUDGET}"
    meta = store.client().get_analysis(run_id).metadata
    assert meta["phase"] == "complete"
    assert meta["model_usage"] == {"model_calls": BUDGET, "tokens": BUDGET * TOKENS_PER_CALL}
    assert f"Model usage: {BUDGET} calls, {BUDGET * TOKENS_PER_CALL} tokens" in report.read_text()


def test_resume_from_mlflow_in_a_new_process_keeps_one_budget(small_store: Store, tmp_path: Path) -> None:
    """``--resume RUN_ID`` semantics: a new analyst, a new graph, no checkpoint; MLflow only."""
    first, _, _, run_id = _first_part(small_store)
    second = ScriptedChatModel(script=_endless)
    analyst = ChatModelAnalyst(second, max_calls=BUDGET)
    report = tmp_path / "resumed.md"
    ctx = offline_context(small_store, analyst=analyst, auto_answer=True,
                          answers={"report_path": {"path": str(report)}})
    build_graph().invoke({"run_id": run_id}, context=ctx)
    assert len(second.received) == BUDGET - 2
    assert analyst.usage()["model_calls"] == BUDGET
    _check_totals(small_store, run_id, [first, second], report)


def test_paused_question_answered_by_a_new_process_keeps_one_budget(small_store: Store,
                                                                   tmp_path: Path) -> None:
    """The CLI's same-machine path: the pending question is answered from the checkpoint by a
    process whose analyst starts from nothing (the setup step is not re-run)."""
    first, saver, config, run_id = _first_part(small_store)
    second = ScriptedChatModel(script=_endless)
    report = tmp_path / "answered.md"
    ctx = offline_context(small_store, analyst=ChatModelAnalyst(second, max_calls=BUDGET),
                          answers={"review_issues": {"decisions": {}}, "log_assessments": {},
                                   "report_path": {"path": str(report)}})
    build_graph(checkpointer=saver).invoke(Command(resume={"approve": True}), config, context=ctx)
    assert len(second.received) == BUDGET - 2
    _check_totals(small_store, run_id, [first, second], report)


def test_an_offline_resume_of_a_model_run_still_reports_its_calls(small_store: Store,
                                                                  tmp_path: Path) -> None:
    _, _, _, run_id = _first_part(small_store)
    report = tmp_path / "offline.md"
    ctx = offline_context(small_store, auto_answer=True, answers={"report_path": {"path": str(report)}})
    build_graph().invoke({"run_id": run_id}, context=ctx)
    meta = small_store.client().get_analysis(run_id).metadata
    assert meta["model_usage"] == {"model_calls": 2, "tokens": 2 * TOKENS_PER_CALL}
    assert f"Model usage: 2 calls, {2 * TOKENS_PER_CALL} tokens" in report.read_text()
