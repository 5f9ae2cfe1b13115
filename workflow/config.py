"""The [workflow] section, typed, and the settings one run uses.

[workflow.<provider>] tables ([workflow.embedded] in config/default.toml; ollama and lm_studio
work the same way) replace [workflow] values when that provider answers: a very small model is
served best by other settings than a large one. A run takes its settings once, when it knows
which provider answers, and keeps them to its end."""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass

from codegen_site.core.sections import section

TESTS_ALWAYS = "always"
TESTS_WITHOUT_EXAMPLES = "without_examples"  # the model writes tests only when the task gives no examples


@dataclass(frozen=True)
class WorkflowSettings:
    """What one run uses; the meaning of each is in config/default.toml."""
    candidates: int
    candidate_temperature: float
    max_repairs: int
    edit_rounds: int
    edit_programs: int
    tests_retries: int
    plan: bool
    model_tests: str
    time_limit: float
    validation_timeout: float
    plan_max_tokens: int
    tests_max_tokens: int
    code_max_tokens: int
    chat_max_tokens: int
    repair_output_chars: int
    context_code_chars: int
    research_top_k: int

    def max_tokens(self, stage: str) -> int | None:
        """The stage's token budget; None: the LLM layer's max_tokens."""
        return getattr(self, f"{stage}_max_tokens") or None

    @property
    def max_attempts(self) -> int:
        """Validated attempts a run may make: the first and its repairs."""
        return 1 + max(0, self.max_repairs)


def _all_optional(cls: type, name: str) -> type:
    hints = typing.get_type_hints(cls)
    return dataclasses.make_dataclass(
        name, [(item.name, hints[item.name] | None, dataclasses.field(default=None))
               for item in dataclasses.fields(cls)], frozen=True)


# [workflow.<provider>]: any WorkflowSettings value, None where the table does not set it
ProviderTable = _all_optional(WorkflowSettings, "ProviderTable")


@dataclass(frozen=True)
class WorkflowSection(WorkflowSettings):
    """[workflow] as configured; a provider without a table of its own takes [workflow] as it is."""
    ollama: ProviderTable = ProviderTable()
    lm_studio: ProviderTable = ProviderTable()
    embedded: ProviderTable = ProviderTable()

    def table(self, provider: str) -> ProviderTable:
        return {"ollama": self.ollama, "lm_studio": self.lm_studio, "embedded": self.embedded}.get(
            provider, ProviderTable())


def configured() -> WorkflowSection:
    return section(WorkflowSection, "workflow")


@functools.lru_cache(maxsize=8)
def _laid_over(configured_section: WorkflowSection, provider: str) -> WorkflowSettings:
    values = {item.name: getattr(configured_section, item.name) for item in dataclasses.fields(WorkflowSettings)}
    table = configured_section.table(provider)
    values.update({name: value for name, value in dataclasses.asdict(table).items() if value is not None})
    return WorkflowSettings(**values)


def settings_for(provider: str) -> WorkflowSettings:
    """[workflow] with the provider's own table laid over it (the same object until the config changes)."""
    return _laid_over(configured(), provider)
