"""The terminal prompts (agent/terminal.py): every question, y/n ones included, also takes
'+ statement' and '- N', and the answers come back as the documented resume values."""

from __future__ import annotations

import io

from rich.console import Console

from agent.terminal import TerminalPrompts

ISSUES = {"kind": "review_issues", "issues": [
    {"issue_id": "i1", "title": "A", "severity": "HIGH", "description": "d", "trace_count": 3,
     "examples": [{"trace_id": "tr-1", "rationale": "r"}]},
    {"issue_id": "i2", "title": "B", "severity": "LOW", "description": "d", "trace_count": 1,
     "examples": []},
]}


def _prompts(*typed: str) -> tuple[TerminalPrompts, list[str]]:
    console = Console(file=io.StringIO(), width=100)
    answers = list(typed)
    console.input = lambda *args, **kwargs: answers.pop(0)   # what the person types, in order
    prompts = TerminalPrompts(console)
    prompts.last_hypotheses = ["h-first", "h-second"]
    return prompts, answers


def test_issue_review_takes_edits_at_the_yes_no_question() -> None:
    prompts, left = _prompts("+ Spanish requests fail more", "maybe", "y", "- 2", "n")
    answer = prompts(ISSUES)
    assert left == []
    assert answer == {"decisions": {"i1": "accept", "i2": "reject"},
                      "add_hypotheses": [{"statement": "Spanish requests fail more"}],
                      "abandon": ["h-second"]}


def test_log_assessments_defaults_to_no_and_takes_an_edit() -> None:
    prompts, left = _prompts("+ Long answers get poor ratings", "")
    answer = prompts({"kind": "log_assessments", "question": "Log assessments?"})
    assert left == []
    assert answer == {"log": False, "add_hypotheses": [{"statement": "Long answers get poor ratings"}]}
