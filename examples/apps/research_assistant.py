"""A LangGraph-style research assistant with seeded planted faults.

Trace shape (what MLflow's LangChain autologger writes, with simulated times):
    <root> (CHAIN "LangGraph" or AGENT)     inputs {"messages": session history + question}
      <Chat class> (CHAT_MODEL)             the router: picks a sub-agent
      <sub-agent> (AGENT)                   2-3 sub-agents, names drawn from a pool
        <Embeddings> (EMBEDDING)            embeds the query
        <retriever> (RETRIEVER)             list of Document dicts {page_content, metadata, id}
        <reranker> (RERANKER)               only for some sub-agents
        <Chat class> (CHAT_MODEL)           writes the answer (LLMResult with ChatGeneration)
    root outputs {"answer": "..."}
Sessions have several turns (`mlflow.trace.session`); users (`mlflow.trace.user`) keep their
tags (plan tier, region, client version); the collection searched is chosen per request.

Faults: outage, empty_answer, conditional_slow and session_degrade always, plus two of
tag_error / truncation / failing_assessment; every name, value, window and threshold comes from
the seed. A confounded region/client segment piles its traffic into the outage window.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from mlflow.entities import LiveSpan, SpanType
from mlflow.tracing.constant import SpanAttributeKey

from . import sim
from .sim import (
    APIConnectionError, AuthenticationError, BadRequestError, RateLimitError, Run,
    ServiceUnavailableError, one_of, sim_span, tokens,
)
from .truth import Fault, GroundTruth

APP = "research_assistant"
ALWAYS = ["outage", "empty_answer", "conditional_slow", "session_degrade"]
OPTIONAL = ["tag_error", "truncation", "failing_assessment"]

AGENT_POOL = ["literature_agent", "web_research_agent", "patent_agent", "code_search_agent",
              "news_agent", "statistics_agent", "legal_agent", "clinical_agent"]
RETRIEVER_POOL = ["VectorStoreRetriever", "ParentDocumentRetriever", "MultiQueryRetriever",
                  "EnsembleRetriever", "ContextualCompressionRetriever"]
RERANKER_POOL = ["CohereRerank", "FlashrankRerank", "CrossEncoderReranker", "JinaRerank"]
EMBEDDING_POOL = ["OpenAIEmbeddings", "VoyageAIEmbeddings", "HuggingFaceEmbeddings",
                  "CohereEmbeddings"]
CHAT_POOL = [("ChatOpenAI", "openai", ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", "gpt-4.1-nano"]),
             ("ChatAnthropic", "anthropic", ["claude-3-5-haiku-latest", "claude-sonnet-4-0",
                                             "claude-3-7-sonnet-latest", "claude-3-haiku"]),
             ("ChatMistralAI", "mistralai", ["mistral-small-latest", "mistral-large-latest",
                                             "open-mixtral-8x22b", "ministral-8b-latest"])]
JUDGE_POOL = ["groundedness", "faithfulness", "answer_correctness", "citation_quality"]
TOPICS = ["transformer scaling laws", "CRISPR off-target effects", "battery cathode chemistry",
          "carbon capture costs", "protein folding benchmarks", "quantum error correction",
          "microplastics in rivers", "solid-state batteries", "antibiotic resistance",
          "federated learning privacy", "urban heat islands", "mRNA vaccine stability"]
ASKS = ["Summarise recent findings on {t}.", "What are the open problems in {t}?",
        "Compare the main approaches to {t}.", "Find sources that criticise {t}.",
        "Give me three key papers on {t} and why they matter."]
FOLLOW_UPS = ["Can you go deeper on the second point?", "What about results since 2022?",
              "Which of these is most cited?", "Any contradicting evidence?",
              "Summarise that for a non-expert.", "What methods did they use?"]


@dataclass
class SubAgent:
    name: str
    model: str
    retriever: str
    reranker: str | None
    max_tokens: int
    weight: float


class Design:
    """Everything the seed decides: names, tags, which faults, their parameters."""

    def __init__(self, seed: int):
        rng = random.Random(f"{APP}:{seed}")
        self.seed = seed
        self.root_name = one_of(rng, ["LangGraph", "research_router", "supervisor"])
        self.root_type = SpanType.CHAIN if self.root_name == "LangGraph" else SpanType.AGENT
        self.chat_class, self.provider, models = one_of(rng, CHAT_POOL)
        models = rng.sample(models, 4)
        self.router_model = models[0]
        self.embedding = one_of(rng, EMBEDDING_POOL)
        names = rng.sample(AGENT_POOL, 3)
        rerankers = rng.sample(RERANKER_POOL, 3)
        with_reranker = {0, 1, 2} - {rng.randrange(3)}  # two of three sub-agents rerank
        weights = rng.sample([0.42, 0.33, 0.25], 3)
        self.agents = [SubAgent(names[i], models[i + 1], one_of(rng, RETRIEVER_POOL),
                                rerankers[i] if i in with_reranker else None,
                                one_of(rng, [256, 384, 512]), weights[i]) for i in range(3)]
        used: set[str] = set()
        self.tier_key = one_of(rng, ["plan", "tier", "subscription"])
        self.region_key = one_of(rng, ["region", "geo", "datacenter"])
        self.client_key = one_of(rng, ["client_version", "app_version", "sdk_version"])
        self.collection_key = one_of(rng, ["collection", "corpus", "library"])
        self.tag_values = {self.tier_key: tokens(rng, 3, used),
                           self.region_key: tokens(rng, 4, used),
                           self.client_key: tokens(rng, 4, used)}
        self.collections = tokens(rng, 4, used)
        self.window = sim.window(rng)
        ckey = one_of(rng, [self.region_key, self.client_key])
        self.confounder = (ckey, one_of(rng, self.tag_values[ckey]))
        self.families = ALWAYS + rng.sample(OPTIONAL, 2)
        # outage
        self.outage_target = one_of(rng, ["embedding", "retriever", "router"])
        self.outage_rate = rng.uniform(0.6, 0.9)
        # empty answers from one collection whose index returns nothing
        self.empty_collection = one_of(rng, self.collections)
        self.empty_rate = rng.uniform(0.6, 0.9)
        # the reranker is slow when the retriever returned more than K documents
        self.top_k = rng.randint(12, 20)
        self.slow_k = rng.randint(7, self.top_k - 4)
        self.slow_s = (rng.uniform(2.5, 3.5), rng.uniform(5.0, 7.0))
        # later turns of long sessions exceed the context window
        self.degrade_turn = rng.randint(4, 5)
        self.degrade_rate = rng.uniform(0.5, 0.8)
        # an auth failure for one tier (some caught by the sub-agent)
        self.auth_tier = one_of(rng, self.tag_values[self.tier_key])
        self.auth_target = one_of(rng, [t for t in ["embedding", "retriever", "chat"]
                                        if t != self.outage_target])
        self.auth_rate = rng.uniform(0.35, 0.6)
        self.auth_caught = rng.uniform(0.3, 0.6)
        # truncation for one sub-agent's model
        self.trunc_agent = one_of(rng, self.agents)
        self.trunc_rate = rng.uniform(0.35, 0.6)
        # the judge
        self.judge = one_of(rng, JUDGE_POOL)
        self.judge_fail = rng.uniform(0.4, 0.6) if "failing_assessment" in self.families \
            else 0.05

    def span_name(self, target: str, agent: SubAgent) -> str:
        return {"embedding": self.embedding, "retriever": agent.retriever,
                "router": self.chat_class, "chat": self.chat_class}[target]


class ResearchAssistant:
    def __init__(self, design: Design, experiment_id: str):
        self.d = design
        self.experiment_id = experiment_id
        self.history: dict[str, list[dict[str, str]]] = {}

    # --- one request -------------------------------------------------------------------------
    def handle(self, run: Run) -> None:
        d, req = self.d, run.request
        req.tags[d.collection_key] = one_of(run.rng, d.collections)
        history = self.history.setdefault(req.session_id, [])
        topic = one_of(run.rng, TOPICS)
        question = (one_of(run.rng, ASKS).format(t=topic) if req.turn == 1
                    else one_of(run.rng, FOLLOW_UPS))
        messages = [*history, {"role": "user", "content": question}]
        in_window = d.window[0] <= req.offset_s <= d.window[1]
        # an outage hits a share of the requests in its window (wherever its span is reached)
        run.facts.update(question=question, messages=messages, outage=(
            "outage" in d.families and in_window and run.rng.random() < d.outage_rate))
        try:
            with sim_span(d.root_name, d.root_type, run.clock, inputs={"messages": messages},
                          experiment_id=self.experiment_id, tags=dict(req.tags),
                          metadata={"mlflow.trace.user": req.user_id,
                                    "mlflow.trace.session": req.session_id}) as root:
                run.trace_id = root.trace_id
                answer = self._respond(run, root, messages, question)
                root.set_outputs({"answer": answer})
                run.answer = answer
        except Exception as exc:  # noqa: BLE001 - the web layer turns this into a 500
            run.error = exc
        history.append({"role": "user", "content": question})
        if run.error is None:
            history.append({"role": "assistant", "content": run.answer})
            if run.answer == "" and run.facts.get("empty_docs"):
                run.fired.add("empty_answer")

    def _respond(self, run: Run, root: LiveSpan, messages: list, question: str) -> str:
        d = self.d
        run.wait(0.01, 0.05)
        agent = run.rng.choices(d.agents, weights=[a.weight for a in d.agents])[0]
        run.facts["agent"] = agent.name
        self._route(run, root, question, agent)
        with sim_span(agent.name, SpanType.AGENT, run.clock, parent=root,
                      inputs={"messages": messages}) as node:
            try:
                vector = self._embed(run, node, question, agent)
                docs = self._retrieve(run, node, question, vector, agent)
                if agent.reranker:
                    docs = self._rerank(run, node, question, docs, agent)
                answer = self._generate(run, node, messages, docs, agent)
            except AuthenticationError:
                if not run.facts.get("auth_caught"):
                    raise
                answer = "I could not reach the knowledge base for your workspace right now."
            node.set_outputs({"answer": answer})
        run.wait(0.005, 0.02)
        return answer

    # --- the spans ---------------------------------------------------------------------------
    def _faults_at(self, run: Run, target: str, span_name: str) -> None:
        """Raise the planted outage / auth failure if this span carries one for this run."""
        d = self.d
        if target == d.outage_target and run.facts["outage"]:
            run.fired.add("outage")
            run.wait(0.5, 2.0)
            raise ServiceUnavailableError(
                f"Error code: 503 - {span_name} upstream service unavailable, retry later")
        if ("tag_error" in d.families and target == d.auth_target
                and run.request.tags[d.tier_key] == d.auth_tier and run.rng.random() < d.auth_rate):
            run.fired.add("tag_error")
            run.facts["auth_caught"] = run.rng.random() < d.auth_caught
            run.wait(0.05, 0.2)
            raise AuthenticationError(
                "Error code: 401 - {'error': {'message': 'Incorrect API key provided for this "
                "workspace', 'type': 'invalid_request_error', 'code': 'invalid_api_key'}}")

    def _route(self, run: Run, root: LiveSpan, question: str, agent: SubAgent) -> None:
        d = self.d
        msgs = [{"role": "system", "content": "Route the question to one of: "
                 + ", ".join(a.name for a in d.agents) + ". Reply with the name only."},
                {"role": "user", "content": question}]
        with self._chat_span(run, root, msgs, d.router_model, 64) as span:
            self._faults_at(run, "router", d.chat_class)
            if run.rng.random() < 0.003:
                run.wait(0.1, 0.3)
                raise RateLimitError("Error code: 429 - Rate limit reached for requests")
            run.wait(0.25, 0.8)
            self._chat_outputs(span, agent.name, d.router_model, msgs, "stop", None)

    def _embed(self, run: Run, parent: LiveSpan, question: str, agent: SubAgent) -> list[float]:
        d = self.d
        with sim_span(d.embedding, SpanType.EMBEDDING, run.clock, parent=parent,
                      inputs={"texts": [question]},
                      attributes={"invocation_params": {"model": "text-embedding-3-small"}}
                      ) as span:
            self._faults_at(run, "embedding", d.embedding)
            run.wait(0.03, 0.12)
            vector = [round(run.rng.uniform(-1, 1), 4) for _ in range(8)]
            span.set_outputs([vector])
        return vector

    def _retrieve(self, run: Run, parent: LiveSpan, question: str, vector: list[float],
                  agent: SubAgent) -> list[dict[str, Any]]:
        d = self.d
        collection = run.request.tags[d.collection_key]
        attrs = {"metadata": {"ls_retriever_name": "vectorstore", "ls_vector_store_provider":
                              "PGVector", "search_kwargs": {"k": d.top_k,
                                                            "filter": {"collection": collection}}}}
        for attempt in range(2):
            with sim_span(agent.retriever, SpanType.RETRIEVER, run.clock, parent=parent,
                          inputs=question, attributes=attrs) as span:
                self._faults_at(run, "retriever", agent.retriever)
                if attempt == 0 and run.rng.random() < 0.01:  # noise: a retried blip
                    run.wait(1.0, 2.0)
                    try:
                        raise APIConnectionError("Connection reset by peer")
                    except APIConnectionError as exc:
                        sim.record_exception(span, exc, run.clock)
                        continue
                run.wait(0.08, 0.35)
                if "empty_answer" in d.families and collection == d.empty_collection \
                        and run.rng.random() < d.empty_rate:
                    n = 0
                    run.facts["empty_docs"] = True
                elif run.rng.random() < 0.01:
                    n = 0  # noise: nothing relevant; the model says so
                else:
                    n = run.rng.randint(1, d.top_k)
                docs = [{"page_content": sim.words(run.rng, 25),
                         "metadata": {"source": f"{collection}/doc-{run.rng.randint(1, 9999)}",
                                      "score": round(run.rng.uniform(0.5, 0.95), 3)},
                         "id": f"doc-{run.rng.getrandbits(32):08x}"} for _ in range(n)]
                span.set_outputs(docs)
                return docs
        return []

    def _rerank(self, run: Run, parent: LiveSpan, question: str, docs: list, agent: SubAgent
                ) -> list:
        d = self.d
        with sim_span(agent.reranker, SpanType.RERANKER, run.clock, parent=parent,
                      inputs={"query": question, "documents": [x["id"] for x in docs]},
                      attributes={"top_n": 4}) as span:
            if "conditional_slow" in d.families and len(docs) > d.slow_k:
                run.fired.add("conditional_slow")
                run.wait(*d.slow_s)
            else:
                run.wait(0.04, 0.6)
            top = sorted(docs, key=lambda x: -x["metadata"]["score"])[:4]
            span.set_outputs(top)
        return top

    def _generate(self, run: Run, parent: LiveSpan, messages: list, docs: list,
                  agent: SubAgent) -> str:
        d = self.d
        context = "\n".join(x["page_content"] for x in docs)
        msgs = [{"role": "system", "content": "Answer from the sources below; cite them.\n"
                 + context}, *messages]
        with self._chat_span(run, parent, msgs, agent.model, agent.max_tokens) as span:
            self._faults_at(run, "chat", d.chat_class)
            prompt_tokens = _count(msgs)
            if ("session_degrade" in d.families and run.request.turn >= d.degrade_turn
                    and run.rng.random() < d.degrade_rate):
                run.fired.add("session_degrade")
                run.wait(0.2, 0.6)
                raise BadRequestError(
                    "Error code: 400 - This model's maximum context length is 8192 tokens. "
                    f"However, your messages resulted in {8192 + prompt_tokens} tokens "
                    "(context_length_exceeded)")
            run.wait(*((0.8, 2.5) if run.rng.random() > 0.02 else (3.0, 6.0)))
            if not docs:
                text = "" if run.facts.get("empty_docs") else \
                    "I could not find sources on that in this collection."
                finish = "stop"
            elif ("truncation" in d.families and agent is d.trunc_agent
                  and run.rng.random() < d.trunc_rate):
                run.fired.add("truncation")
                full = sim.words(run.rng, int(agent.max_tokens * 1.2))
                text = full[: int(len(full) * 0.8)].rstrip()
                finish = "length"
            else:
                text = sim.words(run.rng, run.rng.randint(40, 120)) + " [1][2]"
                finish = "stop"
            out_tokens = agent.max_tokens if finish == "length" else None
            self._chat_outputs(span, text, agent.model, msgs, finish, out_tokens)
        return text

    @staticmethod
    def _chat_outputs(span: LiveSpan, text: str, model: str, msgs: list, finish: str,
                      out_tokens: int | None) -> None:
        usage = {"input_tokens": _count(msgs),
                 "output_tokens": out_tokens if out_tokens is not None else _count_text(text)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)
        token_usage = {"prompt_tokens": usage["input_tokens"],
                       "completion_tokens": usage["output_tokens"],
                       "total_tokens": usage["total_tokens"]}
        span.set_outputs({
            "generations": [[{
                "text": text, "generation_info": {"finish_reason": finish, "logprobs": None},
                "type": "ChatGeneration",
                "message": {"content": text, "additional_kwargs": {"refusal": None},
                            "response_metadata": {"token_usage": token_usage, "model_name": model,
                                                  "finish_reason": finish},
                            "type": "ai", "name": None, "id": f"run-{span.span_id}",
                            "tool_calls": [], "invalid_tool_calls": [],
                            "usage_metadata": usage}}]],
            "llm_output": {"token_usage": token_usage, "model_name": model},
            "run": None, "type": "LLMResult"})

    def _chat_span(self, run: Run, parent: LiveSpan, msgs: list, model: str, max_tokens: int):
        d = self.d
        return sim_span(d.chat_class, SpanType.CHAT_MODEL, run.clock, parent=parent,
                        inputs={"messages": msgs}, attributes={
                            "invocation_params": {"model": model, "max_tokens": max_tokens,
                                                  "temperature": 0.2,
                                                  "_type": f"{d.provider}-chat"},
                            "metadata": {"ls_provider": d.provider, "ls_model_name": model,
                                         "ls_model_type": "chat", "ls_max_tokens": max_tokens},
                            SpanAttributeKey.MESSAGE_FORMAT: "langchain",
                            SpanAttributeKey.MODEL: model,
                            SpanAttributeKey.MODEL_PROVIDER: d.provider})


def _count_text(text: str) -> int:
    return int(len(text.split()) * 1.3) + 1


def _count(msgs: list) -> int:
    return sum(_count_text(m.get("content") or "") + 4 for m in msgs)


# --- assessments --------------------------------------------------------------------------

JUDGE_RATIONALES = ["The answer makes claims the retrieved sources do not support.",
                    "Two of the cited passages do not mention the stated result.",
                    "The summary contradicts source [2] on the main finding.",
                    "The answer attributes a number to a paper that does not contain it."]


def _assess(d: Design, runs: list[Run], rng: random.Random) -> None:
    for run in runs:
        if run.error is not None:
            continue
        if rng.random() < 0.5:
            fail = rng.random() < d.judge_fail
            if fail and "failing_assessment" in d.families:
                run.fired.add("failing_assessment")
            sim.feedback(run, d.judge, "no" if fail else "yes", "LLM_JUDGE", "judge:gpt-4o",
                         one_of(rng, JUDGE_RATIONALES) if fail else "All claims are supported.")
        if rng.random() < 0.25:
            sim.feedback(run, "relevance", rng.choice([3, 4, 4, 5, 5]), "LLM_JUDGE",
                         "judge:gpt-4o-mini")
        if rng.random() < 0.15:
            up = rng.random() >= 0.07
            sim.feedback(run, "user_thumbs_up", up, "HUMAN", run.request.user_id,
                         None if up else "not helpful")


# --- the corpus ---------------------------------------------------------------------------

def generate(tracking_uri: str, n_traces: int, seed: int,
             experiment_name: str = "research-assistant") -> GroundTruth:
    """Trace `n_traces` requests into `tracking_uri`; return what was planted and where."""
    started = time.monotonic()
    d = Design(seed)
    runs, exp_id, t0 = sim.write_corpus(APP, d, ResearchAssistant, _assess, tracking_uri, n_traces, seed,
                                        experiment_name)
    return _truth(d, runs, exp_id, t0, n_traces, time.monotonic() - started)


def _truth(d: Design, runs: list[Run], exp_id: str, t0_ns: int, n: int, seconds: float
           ) -> GroundTruth:
    def ids(family: str) -> set[str]:
        return {r.trace_id for r in runs if family in r.fired}

    trunc = d.trunc_agent

    def names(target: str) -> list[str]:
        if target == "retriever":
            return sorted({a.retriever for a in d.agents})
        return [d.span_name(target, d.agents[0])]

    hours = (d.window[1] - d.window[0]) / 3600
    specs = {
        "outage": (f"{'/'.join(names(d.outage_target))} ({d.outage_target}) raises 503 "
                   f"ServiceUnavailableError inside a {hours:.1f} h window (trace ERROR)",
                   {"span_names": names(d.outage_target),
                    "error_type": "ServiceUnavailableError", "error_match": "503"}),
        "empty_answer": (f"retriever returns no documents for {d.collection_key}="
                         f"{d.empty_collection}, and the answer is {{\"answer\": \"\"}}", {}),
        "conditional_slow": (f"reranker takes {d.slow_s[0]:.1f}-{d.slow_s[1]:.1f} s when the "
                             f"retriever returned more than {d.slow_k} documents",
                             {"span_names": sorted(a.reranker for a in d.agents if a.reranker),
                              "min_ms": d.slow_s[0] * 1000}),
        "session_degrade": (f"turn >= {d.degrade_turn} of a session: the answering chat model "
                            "fails with 400 context_length_exceeded (trace ERROR)",
                            {"span_names": [d.chat_class], "error_type": "BadRequestError",
                             "error_match": "context_length_exceeded"}),
        "tag_error": (f"{d.tier_key}={d.auth_tier}: {d.auth_target} span fails with 401 "
                      "AuthenticationError (caught by the sub-agent for some traces)",
                      {"span_names": names(d.auth_target),
                       "error_type": "AuthenticationError", "error_match": "401"}),
        "truncation": (f"{trunc.name}'s model {trunc.model} stops with finish_reason=length at "
                       f"max_tokens={trunc.max_tokens}; the answer is cut off",
                       {"model": trunc.model, "reason": "length", "max_tokens": trunc.max_tokens}),
        "failing_assessment": (f"LLM judge '{d.judge}' says no on {d.judge_fail:.0%} of the "
                               "traces it rated, unrelated to any feature",
                               {"assessment": d.judge, "failing_values": ["no"]}),
    }
    faults = {}
    for family in d.families:
        desc, params = specs[family]
        faults[family] = Fault(family, family, desc, ids(family), dict(params))
    t0_ms = t0_ns // 1_000_000
    return GroundTruth(APP, d.seed, exp_id, faults, d.confounder,
                       (t0_ms + int(d.window[0] * 1000), t0_ms + int(d.window[1] * 1000)),
                       t0_ms, t0_ms + sim.HOURS * 3_600_000, n, seconds)
