"""The chat-model analyst: any LangChain chat model, under a hard call budget.

It writes the agent description and proposes quality hypotheses with structured output, and
tests hypotheses that have no executable plan in a bounded tool-calling loop. Everything
numbers can decide stays with the offline analyst's computed plans: census issues, mined
operational hypotheses and their verdicts. When the budget is spent it falls back to the
offline analyst's behaviour instead of failing the analysis.

It starts from what the offline analyst knows: a compact digest of the span facts
(``agent.span_facts``: span stats, loops, truncated LLM calls, sessions) opens the proposal and
every testing loop, and the span-fact tools give the full tables on request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from agent import prompts, span_facts
from agent.budget import BudgetExceeded, ModelBudget, attach
from agent.drafts import EvidenceDraft, HypothesisDraft, Verdict
from agent.offline import OfflineAnalyst
from agent.plans import Plan
from agent.tools import VerdictBox, testing_tools

if TYPE_CHECKING:
    from insights.analytics.census_model import Census

MAX_QUALITY_HYPOTHESES = 3
MAX_TOOL_ROUNDS = 8


class QualityHypothesis(BaseModel):
    statement: str
    rationale: str
    testing_plan: str
    cohort_sql: str | None = Field(None, description="Spark SQL predicate for affected traces")
    outcome_sql: str | None = Field(None, description="Spark SQL predicate for the problem")


class QualityHypotheses(BaseModel):
    hypotheses: list[QualityHypothesis] = Field(default_factory=list)


class ChatModelAnalyst(OfflineAnalyst):
    def __init__(self, model, max_calls: int = 30, name: str = "model"):
        self.budget = ModelBudget(max_calls)
        self.model = attach(model, self.budget)
        self.name = name
        self._span_facts: dict[str, dict[str, Any]] = {}

    def span_facts(self, toolkit) -> dict[str, Any]:
        """The compact span facts (``agent.span_facts.digest``), computed once per experiment:
        the model starts from what the offline analyst knows."""
        key = str(toolkit.experiment_id)
        if key not in self._span_facts:
            try:
                self._span_facts[key] = span_facts.digest(toolkit)
            except Exception as exc:  # never a reason to stop the analysis
                self._span_facts[key] = {"unavailable": f"{type(exc).__name__}: {str(exc)[:160]}"}
        return self._span_facts[key]

    def usage(self) -> dict[str, int]:
        return {"model_calls": self.budget.calls, "tokens": self.budget.tokens,
                "max_model_calls": self.budget.max_calls}

    def restore_usage(self, usage: dict[str, int]) -> None:
        """Start the budget from what the analysis already spent (``--resume``)."""
        self.budget.restore(int(usage.get("model_calls", 0) or 0), int(usage.get("tokens", 0) or 0))

    def describe_agent(self, facts: dict[str, Any]) -> str:
        try:
            reply = self.model.invoke([SystemMessage(prompts.DESCRIBE_SYSTEM),
                                       HumanMessage(prompts.quoted(facts))])
        except BudgetExceeded:
            return super().describe_agent(facts)
        except Exception:  # a provider error must not end the analysis: fall back
            return super().describe_agent(facts)
        text = _text(reply).strip()
        return text or super().describe_agent(facts)

    def propose_hypotheses(self, census: Census, focus: str, toolkit) -> list[HypothesisDraft]:
        drafts = super().propose_hypotheses(census, focus, toolkit)
        try:
            structured = self.model.with_structured_output(QualityHypotheses)
            data = {"span_facts": self.span_facts(toolkit), "focus": focus,
                    "census": _census_digest(census),
                    "samples": toolkit.agent_facts().get("samples", [])[:10]}
            result = structured.invoke([
                SystemMessage(prompts.HYPOTHESES_SYSTEM.format(n=MAX_QUALITY_HYPOTHESES,
                                                               facts=prompts.SPAN_FACTS)),
                HumanMessage(prompts.quoted(data))])
        except BudgetExceeded:
            return drafts
        except Exception as exc:  # unparseable structured output, provider error
            toolkit.progress(f"model gave no usable hypotheses ({type(exc).__name__}); "
                             "keeping the computed ones")
            return drafts
        items = result.hypotheses if isinstance(result, QualityHypotheses) else []
        for item in items[:MAX_QUALITY_HYPOTHESES]:
            plan = None
            if item.cohort_sql and item.outcome_sql:
                plan = Plan(cohort=item.cohort_sql, control=f"NOT ({item.cohort_sql})",
                            outcome=item.outcome_sql, split="all")
            drafts.append(HypothesisDraft(
                key=f"model:{item.statement[:80]}", statement=item.statement,
                rationale=item.rationale, testing_plan=item.testing_plan, plan=plan,
                kind="quality", issue_title=item.statement[:80]))
        return drafts

    def test_hypothesis(self, hypothesis, toolkit) -> Verdict:
        if (hypothesis.metadata or {}).get("plan"):
            return super().test_hypothesis(hypothesis, toolkit)
        if self.budget.remaining == 0:
            return Verdict(status="TESTING", reason="model call budget spent before testing")
        return self._tool_loop(hypothesis, toolkit)

    def _tool_loop(self, hypothesis, toolkit) -> Verdict:
        box = VerdictBox()
        tools = testing_tools(toolkit.client, toolkit.experiment_id, toolkit.run_id, box)
        by_name = {t.name: t for t in tools}
        bound = self.model.bind_tools(tools)
        messages = [
            SystemMessage(prompts.TESTING_SYSTEM.format(calls=self.budget.remaining,
                                                        facts=prompts.SPAN_FACTS)),
            HumanMessage("The hypothesis to test and its testing plan:\n" + prompts.quoted(
                {"hypothesis": hypothesis.statement, "testing_plan": hypothesis.testing_plan})),
            HumanMessage("Span facts (computed from every trace):\n"
                         + prompts.quoted(self.span_facts(toolkit))),
        ]
        for _ in range(MAX_TOOL_ROUNDS):
            try:
                reply = bound.invoke(messages)
            except BudgetExceeded:
                break
            except Exception as exc:
                toolkit.progress(f"model call failed: {type(exc).__name__}: {str(exc)[:120]}")
                break
            messages.append(reply)
            calls = getattr(reply, "tool_calls", None) or []
            if not calls:
                break
            for call in calls:
                output = _run_tool(by_name, call)
                toolkit.progress(f"model used {call['name']}: {str(call['args'])[:120]}")
                messages.append(ToolMessage(str(output), tool_call_id=call.get("id") or call["name"]))
            if box.status:
                break
        evidence = [EvidenceDraft(**e) for e in box.evidence]
        toolkit.link([e.trace_id for e in evidence])
        if not box.status:
            return Verdict(status="TESTING", reason="the model gave no verdict within its budget",
                           evidence=evidence)
        if not evidence:
            return Verdict(status="TESTING", reason="the model cited no traces; a verdict needs "
                           "evidence", evidence=evidence)
        return Verdict(status=box.status, reason=box.reason, evidence=evidence)


def _run_tool(by_name: dict[str, Any], call: dict[str, Any]) -> str:
    """One tool call's output; any failure goes back to the model as a quoted error."""
    tool = by_name.get(call["name"])
    if tool is None:
        return prompts.quoted_error(f"no tool named {call['name']}")
    try:
        return str(tool.invoke(call["args"]))
    except Exception as exc:  # bad arguments from the model, a store error: the loop goes on
        return prompts.quoted_error(f"{type(exc).__name__}: {exc}")


def _census_digest(census: Census) -> dict[str, Any]:
    digest = census.model_dump(mode="json", include={"total_traces", "error_rate", "latency_ms",
                                                     "responses", "assessments"})
    digest["tools"] = [t.model_dump(include={"name", "calls", "failures"}) for t in census.tools]
    return digest


def _text(message) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):
        return " ".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def load_model(spec: str, max_calls: int) -> ChatModelAnalyst:
    """``provider:name`` through LangChain's ``init_chat_model``."""
    from langchain.chat_models import init_chat_model

    model = init_chat_model(spec)
    return ChatModelAnalyst(model, max_calls=max_calls, name=f"model:{spec}")
