"""One run of the pipeline: what it was asked (a Job, fixed from start to end) and what it has
produced so far (a RunState, filled in by the stages)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from codegen_site.llm import LLMService
from workflow.config import WorkflowSettings
from workflow.models import WorkflowRun
from workflow.services.examples import Contract
from workflow.services.programs import Scored
from workflow.services.suite import Suite

Event = tuple[str, dict]


@dataclass(frozen=True)
class Job:
    task: str
    session_id: uuid.UUID
    intent_kind: str
    contract: Contract
    settings: WorkflowSettings  # [workflow] for the provider that answers, taken once at the start
    llm: LLMService


@dataclass
class RunState:
    run: WorkflowRun
    deadline: float  # time.monotonic() at which no new stage starts
    timings: dict = field(default_factory=dict)  # stage -> seconds
    models: dict = field(default_factory=dict)  # stage -> the model that answered
    out_of_time: bool = False
    tests: Suite = field(default_factory=lambda: Suite([], []))
    dropped_tests: list[str] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)  # every validated program, in order
    suspects: list[str] = field(default_factory=list)
    candidates: int = 0  # programs sampled for the first attempt
    edited: set[str] = field(default_factory=set)  # programs an edit search started from
    edit_searches: list[dict] = field(default_factory=list)
    validations: int = 0  # `validation` events sent

    def add_time(self, stage: str, started: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.monotonic() - started, 3)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def in_time(self) -> bool:
        if self.remaining() <= 0:
            self.out_of_time = True
        return not self.out_of_time

    def run_timeout(self, limit: float) -> float:
        """A sandbox run's limit: `limit` (the validation timeout), cut to what is left of the run's time."""
        return min(limit, max(1.0, self.remaining()))

    def counted(self) -> set[str]:
        """The tests a program is judged by: all but the suspects."""
        return set(self.tests.names()) - set(self.suspects)
