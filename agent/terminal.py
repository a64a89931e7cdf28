"""Driving the workflow from a terminal: stream progress, answer interrupts at prompts.

The graph is streamed with the ``custom`` mode (progress written by nodes) and ``updates``;
when it stops at an interrupt, the person answers at a prompt and the graph resumes with
``Command(resume=answer)``. At any prompt, ``+ statement`` adds a hypothesis and
``- ID`` (or a number from the last hypotheses table) abandons one.

Progress messages, descriptions, titles and statements are data: they reach rich only as
``Text``, so brackets in them are shown as typed, never read as markup.
"""

from __future__ import annotations

from typing import Any, Callable

from langgraph.types import Command
from rich.console import Console
from rich.panel import Panel
from rich.prompt import Prompt
from rich.table import Table
from rich.text import Text

Ask = Callable[[dict[str, Any]], dict[str, Any]]


def drive(graph, config: dict, context, first_input: Any, console: Console, ask: Ask) -> dict[str, Any]:
    """Run to the end, asking ``ask(payload)`` at each interrupt; return the final state."""
    payload = first_input
    while True:
        for mode, chunk in graph.stream(payload, config, context=context,
                                        stream_mode=["custom", "updates"]):
            if mode == "custom" and isinstance(chunk, dict):
                show_progress(console, chunk)
        snapshot = graph.get_state(config)
        if not snapshot.interrupts:
            return dict(snapshot.values)
        payload = Command(resume=ask(snapshot.interrupts[0].value))


def show_progress(console: Console, event: dict[str, Any]) -> None:
    message = str(event.get("message", ""))
    verdict = event.get("verdict")
    style = {"VALIDATED": "bold green", "REJECTED": "bold red"}.get(verdict, "")
    if message.startswith("testing hypothesis"):
        console.rule(Text(message[:100]))
    elif message.startswith("testing plan"):
        console.print(Panel(Text(message.split("\n", 1)[-1]), title="testing plan", expand=False))
    else:
        console.print(Text.assemble(("• ", "dim"), (message, style)), highlight=False)


class TerminalPrompts:
    """Answers interrupt payloads by asking the person; ``kind`` selects the question."""

    def __init__(self, console: Console):
        self.console = console
        self.last_hypotheses: list[str] = []

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        kind = payload.get("kind")
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            return payload.get("default", {})
        return handler(payload)

    def _edits(self, text: str) -> dict[str, Any] | None:
        """'+ statement' adds a hypothesis; '- id-or-number' abandons one."""
        text = text.strip()
        if text.startswith("+") and text[1:].strip():
            return {"add_hypotheses": [{"statement": text[1:].strip()}]}
        if text.startswith("-") and text[1:].strip():
            ref = text[1:].strip()
            if ref.isdigit() and 0 < int(ref) <= len(self.last_hypotheses):
                ref = self.last_hypotheses[int(ref) - 1]
            return {"abandon": [ref]}
        return None

    def _prompt(self, question: str, default: str = "") -> tuple[str, dict[str, Any]]:
        """Ask; edits typed at the prompt are collected and the question asked again."""
        edits: dict[str, Any] = {}
        while True:
            text = Prompt.ask(Text(question), default=default, console=self.console)
            found = self._edits(text)
            if found is None:
                return text, edits
            for key, values in found.items():
                edits.setdefault(key, []).extend(values)
            self.console.print("[dim]noted; it is written to MLflow when you answer[/dim]")

    def _confirm_description(self, payload):
        self.console.print(Panel(Text(str(payload["description"])),
                                 title="What the agent seems to do"))
        text, edits = self._prompt("Press Enter to confirm, or type a corrected description")
        return {"description": text or payload["description"], **edits}

    def _choose_focus(self, payload):
        options = payload["options"]
        for n, option in enumerate(options, 1):
            self.console.print(f"  {n}. {option}", markup=False, highlight=False)
        text, edits = self._prompt("Focus (number or your own words)", "1")
        focus = options[int(text) - 1] if text.isdigit() and 0 < int(text) <= len(options) else text
        return {"focus": focus, **edits}

    def _review_hypotheses(self, payload):
        items = payload["hypotheses"]
        self.last_hypotheses = [h["hypothesis_id"] for h in items]
        table = Table(title="Proposed hypotheses")
        for col in ("#", "statement", "rationale"):
            table.add_column(col, overflow="fold")
        for n, h in enumerate(items, 1):
            table.add_row(str(n), Text(str(h["statement"])), Text(str(h.get("rationale") or "")))
        self.console.print(table)
        text, edits = self._prompt("Numbers to reject (comma-separated), Enter to test all, "
                                   "n to test none and edit the list")
        if text.strip().lower() in ("n", "no"):
            return {"approve": False, **edits}
        reject = [self.last_hypotheses[int(x) - 1] for x in text.replace(" ", "").split(",")
                  if x.isdigit() and 0 < int(x) <= len(items)]
        edits.setdefault("abandon", []).extend(reject)
        return {"approve": True, **edits}

    def _edit_hypotheses(self, payload):
        """After 'n' at the review: '+ statement' and '- N' edit the list, then y tests it."""
        from rich.markup import escape

        items = payload["hypotheses"]
        self.last_hypotheses = [h["hypothesis_id"] for h in items]
        for n, h in enumerate(items, 1):
            self.console.print(f"  {n}. {escape(h['statement'])}")
        self.console.print("[dim]+ statement adds a hypothesis, - N abandons one[/dim]")
        approve, edits = self._yes_no("Test this list as edited? (n: test none of it)", default=False)
        return {"approve": approve, **edits}

    def _confirm_plan(self, payload):
        """Each plan mapped from a person's statement, shown before it is used."""
        from rich.markup import escape

        for u in payload.get("untestable") or []:
            self.console.print(f"[yellow]not testable offline:[/yellow] {escape(u['statement'])}: "
                               f"{escape(u['reason'])}")
        decisions: dict[str, str] = {}
        edits: dict[str, Any] = {}
        for p in payload["plans"]:
            body = "\n".join(["Recognised: " + "; ".join(p["matched"]), "", p["testing_plan"]])
            self.console.print(Panel(escape(body), title=escape(p["statement"][:100])))
            keep, found = self._yes_no("Test it with this plan?", default=True)
            for key, values in found.items():
                edits.setdefault(key, []).extend(values)
            decisions[p["hypothesis_id"]] = "accept" if keep else "reject"
        return {"decisions": decisions, **edits}

    def _yes_no(self, question: str, default: bool) -> tuple[bool, dict[str, Any]]:
        """A y/n question that, like every prompt, also takes '+ statement' and '- N'."""
        edits: dict[str, Any] = {}
        while True:
            text, found = self._prompt(f"{question} [y/n]", "y" if default else "n")
            for key, values in found.items():
                edits.setdefault(key, []).extend(values)
            answer = text.strip().lower()
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y"), edits
            self.console.print("[dim]answer y or n (or + statement, - N)[/dim]")

    def _review_issues(self, payload):
        decisions: dict[str, str] = {}
        edits: dict[str, Any] = {}
        for issue in payload["issues"]:
            examples = "\n".join(f"  {e['trace_id']}: {e['rationale']}" for e in issue["examples"])
            body = f"{issue['description']}\n\nTraces: {issue['trace_count']}\n{examples}"
            title = f"[{issue['severity']}] {issue['title']}"
            self.console.print(Panel(Text(body), title=Text(title)))
            keep, found = self._yes_no("Accept this issue?", default=True)
            for key, values in found.items():
                edits.setdefault(key, []).extend(values)
            decisions[issue["issue_id"]] = "accept" if keep else "reject"
        return {"decisions": decisions, **edits}

    def _log_assessments(self, payload):
        log, edits = self._yes_no(payload["question"], default=False)
        return {"log": log, **edits}

    def _report_path(self, payload):
        text, edits = self._prompt(payload["question"], payload["default"]["path"])
        return {"path": text, **edits}
