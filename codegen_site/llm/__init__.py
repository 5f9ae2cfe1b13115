"""One LLM layer for every app. Use `get_llm()`; `llm_resources()` owns what the layer keeps for
the process (connection pools, probe answers, in-process models) and closes it at shutdown. Every
request is fitted to its model's context window (`codegen_site.llm.budget`) and says what it left out."""

from codegen_site.llm.budget import ContextBudget, ContextReport, estimate_tokens
from codegen_site.llm.errors import ContextTooLarge, LLMError, LLMModelNotFound, LLMUnavailable, LLMUpstreamError
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.router import classify_task
from codegen_site.llm.service import ChatStream, Completion, LLMService, clear_probe_cache, get_llm
from codegen_site.llm.thinking import Delta, ThinkSplitter

__all__ = [
    "ChatStream", "Completion", "ContextBudget", "ContextReport", "ContextTooLarge", "Delta", "LLMError",
    "LLMModelNotFound", "LLMService", "LLMUnavailable", "LLMUpstreamError", "ThinkSplitter", "classify_task",
    "clear_probe_cache", "estimate_tokens", "get_llm", "llm_resources",
]
