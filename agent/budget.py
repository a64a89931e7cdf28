"""A hard cap on chat-model calls, enforced inside LangChain's callback system.

The handler is attached to the model itself, so every call through ``invoke``,
``bind_tools`` or ``with_structured_output`` passes through it; the call that would exceed the
cap is refused before any request is sent. It also totals tokens from usage metadata.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler


class BudgetExceeded(RuntimeError):
    """Raised instead of making a model call beyond ``--max-model-calls``."""


class ModelBudget(BaseCallbackHandler):
    raise_error = True

    def __init__(self, max_calls: int):
        self.max_calls = max_calls
        self.calls = 0
        self.tokens = 0

    def restore(self, calls: int, tokens: int) -> None:
        """Count what earlier processes spent on the same analysis (never lowers the count)."""
        self.calls = max(self.calls, int(calls))
        self.tokens = max(self.tokens, int(tokens))

    @property
    def remaining(self) -> int:
        return max(self.max_calls - self.calls, 0)

    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, **kwargs: Any) -> None:
        if self.calls >= self.max_calls:
            raise BudgetExceeded(f"model call budget of {self.max_calls} calls is spent")
        self.calls += 1

    def on_llm_start(self, serialized: dict[str, Any], prompts: Any, **kwargs: Any) -> None:
        self.on_chat_model_start(serialized, prompts)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        for generations in getattr(response, "generations", []):
            for generation in generations:
                usage = getattr(getattr(generation, "message", None), "usage_metadata", None) or {}
                self.tokens += int(usage.get("total_tokens", 0) or 0)


def attach(model, budget: ModelBudget):
    """Put the budget on the model so every derived runnable reports to it."""
    callbacks = list(model.callbacks or []) if isinstance(model.callbacks, list) else []
    model.callbacks = callbacks + [budget]
    return model
