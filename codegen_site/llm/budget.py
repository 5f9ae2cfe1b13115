"""The context budget: how much of a model's window a request may fill, and what was left out to fit.

Why: a model server cuts a prompt longer than its window itself, and says nothing; Ollama cuts to its
default num_ctx (2048 or 4096 tokens on many installs) unless the request asks for more. So every request
is measured before it is sent:

- the window: each provider knows its model's (`Provider.context_window`): the bundled model's n_ctx;
  Ollama's `*.context_length` from /api/show, capped by ollama.max_context_tokens; an OpenAI-compatible
  server's from openai_compatible.context_tokens (such a server fixes it when it loads the model). Looked
  up once per model and kept (codegen_site.llm.resources);
- the prompt: counted with the bundled model's own chat template and tokenizer (exact), otherwise
  estimated on the high side (`estimate_tokens`, calibrated below);
- the answer: max_tokens stays free for it.

`ContextBudget.fit` keeps every system message and the last message, and leaves out the oldest others
until prompt and answer fit; when even those do not fit it raises ContextTooLarge (413), saying by how many
tokens. What a request sent is its `ContextReport` (window, prompt tokens, answer tokens, messages left
out, Ollama's num_ctx), on ChatStream.context and Completion.context.

Calibration of the estimate. Characters per token, measured on this repository's Python and JavaScript
(204 files, 1.4 M characters), English prose (its docs and Django's English messages, 74 K) and Russian
prose (the API reference's and Django's Russian messages, 12 K, two thirds Cyrillic):

    tokenizer                            code                 English prose        Russian prose
    Qwen2.5 (151 K tokens: the default)  4.08 (10% of files   3.83 (3.58)          3.09
                                         below 3.73)
    SmolLM2 (49 K: the bundled model)    3.45 (3.12)          3.47 (3.21)          1.42

ASCII is counted at 3 characters a token, under the tenth percentile of both on code and on prose; any
other character at 2 UTF-8 bytes a token (one token a Cyrillic letter, where SmolLM2 spends 0.9 and
Qwen2.5 0.36; 1.5 a CJK character); plus MESSAGE_OVERHEAD tokens a message for the chat template's role
markers and PROMPT_OVERHEAD for the template's own text (a default system prompt, the answer's header).
The estimate so errs high, over the whole of each corpus: 1.37x Qwen2.5's count on code, 1.29x on English,
2.4x on Russian; 1.16x, 1.16x and 1.11x SmolLM2's (whose count is above it for 7 of the 204 code files,
by 11% at most: symbol-dense ones, where a small vocabulary spends most). Erring high
leaves some history out early and asks for a larger num_ctx; erring low would be the silent cut this module
exists to prevent. tests/test_context_budget.py holds the estimate above the bundled tokenizer's count on
this repository's code and docs."""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass
from typing import Protocol, Sequence

from codegen_site.llm.errors import ContextTooLarge

Message = dict[str, str]

ASCII_CHARS_PER_TOKEN = 3.0
OTHER_BYTES_PER_TOKEN = 2.0
MESSAGE_OVERHEAD = 8
PROMPT_OVERHEAD = 32


def estimate_tokens(text: str) -> int:
    """Tokens `text` takes at most, for a tokenizer this service cannot run (see the calibration above)."""
    if text.isascii():
        return math.ceil(len(text) / ASCII_CHARS_PER_TOKEN)
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_bytes = len(text.encode("utf-8", "replace")) - ascii_chars
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN + other_bytes / OTHER_BYTES_PER_TOKEN)


class TokenCounter(Protocol):
    """Counts tokens for one model: a text alone, one message's share of a prompt, a whole prompt."""

    exact: bool

    def text(self, text: str) -> int: ...

    def message(self, message: Message) -> int: ...

    def prompt(self, messages: Sequence[Message]) -> int: ...


class EstimateCounter:
    """The calibrated estimate; a prompt's count is the sum of its messages' plus the template's."""

    exact = False

    def text(self, text: str) -> int:
        return estimate_tokens(text)

    def message(self, message: Message) -> int:
        return estimate_tokens(message.get("content") or "") + MESSAGE_OVERHEAD

    def prompt(self, messages: Sequence[Message]) -> int:
        return PROMPT_OVERHEAD + sum(self.message(message) for message in messages)


ESTIMATE = EstimateCounter()


@dataclass(frozen=True)
class Fitted:
    """Messages that fit, their prompt's tokens, and how many of the given ones were left out."""

    messages: list[Message]
    prompt_tokens: int
    left_out: int = 0


@dataclass(frozen=True)
class ContextReport:
    """What one request sent, against its model's window: nothing cut without it being said here."""

    window: int
    prompt_tokens: int
    answer_tokens: int            # kept free for the answer (the request's max_tokens)
    messages_left_out: int        # dropped by the LLM layer to fit, oldest first
    exact: bool                   # counted with the model's own tokenizer (else the calibrated estimate)
    num_ctx: int | None = None    # the context size asked of Ollama

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ContextBudget:
    """One model's window, the answer's share of it, and the way its prompts are counted."""

    window: int
    answer_tokens: int
    counter: TokenCounter
    model: str = ""
    provider: str = ""            # its label, for messages

    @property
    def exact(self) -> bool:
        return self.counter.exact

    @property
    def limit(self) -> int:
        """The most tokens a prompt may take."""
        return self.window - self.answer_tokens

    def count(self, messages: Sequence[Message]) -> int:
        return self.counter.prompt(messages)

    async def acount(self, messages: Sequence[Message]) -> int:
        """`count` off the event loop when a tokenizer runs (a long text takes it milliseconds)."""
        if self.exact:
            return await asyncio.to_thread(self.count, messages)
        return self.count(messages)

    def message_tokens(self, message: Message) -> int:
        return self.counter.message(message)

    def text_tokens(self, text: str) -> int:
        return self.counter.text(text)

    def too_large(self, prompt_tokens: int, what: str = "The prompt") -> ContextTooLarge:
        over = prompt_tokens - self.limit
        counted = "" if self.exact else " (estimated)"
        where = f"{self.model} ({self.provider})" if self.provider else self.model or "the model"
        return ContextTooLarge(
            f"{what} does not fit the context window of {where}: {prompt_tokens:,} tokens{counted} and "
            f"{self.answer_tokens:,} kept for the answer need {prompt_tokens + self.answer_tokens:,}, the window "
            f"holds {self.window:,}: {over:,} tokens over.",
            window=self.window, prompt_tokens=prompt_tokens, answer_tokens=self.answer_tokens, over=over)

    def fit(self, messages: Sequence[Message]) -> Fitted:
        """The messages within the budget: every system message and the last one stay, the oldest
        others are left out until the prompt fits; ContextTooLarge when the kept ones alone do not."""
        messages = list(messages)
        total = self.count(messages)
        if total <= self.limit:
            return Fitted(messages, total)
        droppable = [index for index, message in enumerate(messages[:-1]) if message.get("role") != "system"]
        dropped: set[int] = set()
        expected = total
        for index in droppable:  # oldest first, by their own counts (the estimate's add up exactly)
            if expected <= self.limit:
                break
            dropped.add(index)
            expected -= self.message_tokens(messages[index])
        kept = [message for index, message in enumerate(messages) if index not in dropped]
        total = self.count(kept)
        for index in droppable:  # a tokenizer's whole count can differ by a token or so at the joins
            if total <= self.limit:
                break
            if index not in dropped:
                dropped.add(index)
                kept = [message for position, message in enumerate(messages) if position not in dropped]
                total = self.count(kept)
        if total > self.limit:
            raise self.too_large(total)
        return Fitted(kept, total, len(dropped))

    async def afit(self, messages: Sequence[Message]) -> Fitted:
        if self.exact:
            return await asyncio.to_thread(self.fit, messages)
        return self.fit(messages)

    def report(self, fitted: Fitted, num_ctx: int | None = None) -> ContextReport:
        return ContextReport(window=self.window, prompt_tokens=fitted.prompt_tokens,
                             answer_tokens=self.answer_tokens, messages_left_out=fitted.left_out,
                             exact=self.exact, num_ctx=num_ctx)


def context_size(needed: int, window: int, smallest: int) -> int:
    """The context size to ask a server for: `smallest`, doubled until `needed` fits, never past the
    window. Few distinct sizes: Ollama reloads a model whose context size changes."""
    size = max(1, smallest)
    while size < needed:
        size *= 2
    return min(size, window)
