"""The model's side of a turn: `reply` (POST /chat) waits for the whole answer; `turn_events`
(/chat/stream) relays it as it comes. Both check first that the question fits the model's context
window (`turn_budget`: 413 before anything is stored), store the question before asking the model
and the answer after (chat.services.turns), and say in `context` what the window held and what was
left out to fit."""

from __future__ import annotations

import logging
import uuid
from contextlib import aclosing
from typing import Any, AsyncIterator

from chat.services.context import context_summary, turn_budget
from chat.services.turns import Answer, finish_turn, prepare_turn, start_turn, store_user_message
from codegen_site.core.sse import TOKENS, error_event
from codegen_site.llm import ContextBudget, LLMError, get_llm

logger = logging.getLogger(__name__)


async def reply(message: str, history: list[dict[str, str]] | None = None,
                conversation_id: uuid.UUID | None = None, model: str | None = None) -> dict:
    """POST /chat: the whole answer at once."""
    budget = await turn_budget(message, model)
    turn = await start_turn(message, history, conversation_id, budget)
    completion = await get_llm().complete(turn.llm_messages, model=model, task=message)
    answer = Answer(content=completion.content, thinking=completion.thinking, model=completion.model,
                    finished=True)
    await finish_turn(turn.conversation_id, answer)
    return {"content": answer.content, "thinking": answer.thinking, "model": answer.model,
            "conversation_id": turn.conversation_id, "sources": turn.sources,
            "context": context_summary(turn.prompt, budget, completion.context)}


async def turn_events(message: str, history: list[dict[str, str]] | None = None,
                      conversation_id: uuid.UUID | None = None, model: str | None = None,
                      budget: ContextBudget | None = None) -> AsyncIterator[tuple[str, Any]]:
    """One turn as events: TOKENS batches (`thinking` / `content` deltas as the
    LLM sent them together), then `done`, or `error` when the LLM fails. The user
    message is stored before the LLM is asked. Whatever arrived is stored even
    when the client hangs up (this generator is then cancelled or closed at an
    await point); closing the delta iterator closes the upstream request.

    `budget` is the one `turn_budget` gave (the view checks the question fits
    before the stream starts, so a 413 is a JSON answer); without it, it is
    taken here and a question too long is an `error` event."""
    if budget is None:
        try:
            budget = await turn_budget(message, model)
        except LLMError as exc:
            yield error_event(exc)
            return
    turn = await prepare_turn(message, history, conversation_id, budget)
    # Stored before the LLM is asked: asking it meanwhile let a fast stream's
    # first chunks arrive during the write, and the event loop parsed them while
    # the database thread waited for the GIL, delaying the first chunk
    # (measured with bench/sse_relay.py).
    await store_user_message(turn)
    answer = Answer()
    chat = None
    saved = False

    async def save(finished: bool) -> None:
        nonlocal saved
        if not saved:
            saved = True
            # chat.model names the model that answered, after any fallback.
            await finish_turn(turn.conversation_id, answer.close(chat.model if chat else "", finished))

    try:
        chat = await get_llm().stream(turn.llm_messages, model=model, task=turn.message)
        async with aclosing(chat.batches()) as batches:
            async for batch in batches:
                answer.extend(batch)
                yield TOKENS, batch
        await save(finished=True)
        yield "done", {"conversation_id": str(turn.conversation_id), "model": chat.model, "sources": turn.sources,
                       "context": context_summary(turn.prompt, budget, chat.context)}
    except LLMError as exc:
        logger.warning("Chat stream for %s failed: %s", turn.conversation_id, exc.detail)
        await save(finished=False)
        yield error_event(exc, conversation_id=str(turn.conversation_id))
    finally:
        if not saved:  # client gone (cancelled or closed mid-stream)
            try:
                await save(finished=False)
            except BaseException:  # never mask what is ending the stream
                logger.exception("Could not store the cut-off answer of %s", turn.conversation_id)
