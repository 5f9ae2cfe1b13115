"""The edit search of a repair round: programs one edit away from the failing ones, tried
against the counted tests in one sandbox run, then edits of the edits that got closer
(`edit_rounds` in all; the edits themselves are edits.py's). No model is asked. The best
edited program that beats the program it came from is validated like any other program."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import AsyncIterator

from codegen_site.sandbox import arun_python
from workflow.services import edits, suite
from workflow.services.edits import Edit
from workflow.services.programs import Scored
from workflow.services.state import Event, Job, RunState
from workflow.services.validation import validate, validation_event

Score = tuple[int, int]  # (task tests passed, tests passed) of a trial; (-1, -1) when it printed nothing


@dataclass(frozen=True)
class Lead:
    """A program the search edits: a failing program, or an edit of one that got closer."""
    code: str
    change: str  # what the search changed in `source` to get here ("" for the source itself)
    source: Scored  # the validated program the search started from

    def edited(self, edit: Edit) -> Lead:
        return Lead(edit.code, f"{self.change}; {edit.change}" if self.change else edit.change, self.source)


@dataclass(frozen=True)
class Trial:
    """One edit of a lead, run against the tests."""
    parent: Lead
    program: Lead


@dataclass(frozen=True)
class Closer:
    """A trial that passed more than its parent."""
    score: Score
    program: Lead


async def search_edits(job: Job, state: RunState, sources: list[Scored], attempt: int) -> AsyncIterator[Event]:
    """Edit search from the failing `sources`; yields the validation of the program it found, if any."""
    settings = job.settings
    counted = state.counted()
    names = edits.plain_tests(state.tests, [name for name in state.tests.names() if name in counted])
    sources = [item for item in sources if item.code.strip() and item.code not in state.edited]
    if settings.edit_rounds <= 0 or settings.edit_programs <= 0 or not names or not sources or not state.in_time():
        return
    state.edited.update(item.code for item in sources)
    task_names = set(state.tests.names(suite.TASK))

    def score(passed: set[str] | None) -> Score:
        return (len(passed & task_names), len(passed)) if passed is not None else (-1, -1)

    started = time.monotonic()
    leads = [Lead(item.code, "", item) for item in sources]
    found: Closer | None = None
    tried = 0
    for _ in range(settings.edit_rounds):
        share = max(1, settings.edit_programs // len(leads))
        trials = [Trial(lead, lead.edited(edit)) for lead in leads for edit in edits.single_edits(lead.code, share)]
        if not trials or not state.in_time():
            break
        codes = [lead.code for lead in leads] + [trial.program.code for trial in trials]
        result = await arun_python(edits.trial_program(codes, state.tests.source(set(names)), names),
                                   timeout=state.run_timeout(settings.validation_timeout))
        tried += len(trials)
        passed = edits.read_trial(result.output, names, len(codes))
        before = {lead.code: score(outcome) for lead, outcome in zip(leads, passed[:len(leads)], strict=True)}
        closer = sorted([Closer(score(outcome), trial.program)
                         for trial, outcome in zip(trials, passed[len(leads):], strict=True)
                         if score(outcome) > before[trial.parent.code]],
                        key=lambda item: item.score, reverse=True)  # stable: the first edit of equals
        if not closer:
            break
        if found is None or closer[0].score > found.score:
            found = closer[0]
        if found.score[1] == len(names):
            break  # passes every test a trial can run
        leads = [item.program for item in closer[:3]]
    state.add_time("edits", started)
    state.edit_searches.append({"attempt": attempt, "tried": tried, "found": found.program.change if found else ""})
    if found is None:
        return
    edited = await validate(job, state, found.program.code, found.program.source.candidate, attempt)
    edited.edit = found.program.change
    state.scored.append(edited)
    yield validation_event(state, edited)
