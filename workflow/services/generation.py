"""The LLM calls of a run, streamed: each as `stage` / `stage_thinking` events while collecting
its text, and several at once (the first attempt's candidates) merged into one stream."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator

from workflow.services import prompts
from workflow.services.state import Event, Job, RunState


@dataclass
class Generated:
    """What one streamed LLM call produced (async generators cannot return values)."""
    text: str = ""
    thinking: str = ""
    model: str = ""


async def generate(job: Job, state: RunState, stage: str, messages: list[dict], out: Generated, *,
                   event: str | None = None, timing: str | None = None, model_key: str | None = None,
                   tier: str | None = None, temperature: float | None = None,
                   extra: dict | None = None) -> AsyncIterator[Event]:
    """One LLM call of a stage, streamed as `event` / `event_thinking` chunks and collected
    into `out`; records the model that answered and the time spent. A call still running
    at the run's deadline is cut short (the upstream request is closed)."""
    event = event or stage
    started = time.monotonic()
    chat = await job.llm.stream(messages, task=None if tier else job.task, tier=tier,
                                max_tokens=job.settings.max_tokens(stage), temperature=temperature)
    async with aclosing(aiter(chat)) as deltas:  # closing it closes the upstream request
        async for delta in deltas:
            if delta.kind == "content":
                out.text += delta.text
                yield event, {"content": delta.text, **(extra or {})}
            else:
                out.thinking += delta.text
                yield f"{event}_thinking", {"content": delta.text, **(extra or {})}
            if not state.in_time():
                break
            if stage in ("tests", "code") and prompts.fenced_block_closed(out.text):
                break  # only the block is used; the prose models add after it costs time
    out.model = chat.model
    state.models[model_key or stage] = chat.model
    state.add_time(timing or stage, started)


async def merge(streams: list[AsyncIterator[Event]]) -> AsyncIterator[Event]:
    """The events of several streams as they come; closing the merge cancels every stream
    (and so closes their upstream requests)."""
    queue: asyncio.Queue = asyncio.Queue()
    finished = object()

    async def pump(stream: AsyncIterator[Event]) -> None:
        try:
            async with aclosing(stream) as events:
                async for event in events:
                    queue.put_nowait(event)
        except Exception as exc:
            queue.put_nowait((finished, exc))
            return
        queue.put_nowait((finished, None))

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item[0] is finished:
                running -= 1
                if item[1] is not None:
                    raise item[1]
                continue
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
