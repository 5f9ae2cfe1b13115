"""One LLM layer for every app. Use `get_llm()`; `llm_resources()` owns what the layer keeps for
the process (connection pools, probe answers, in-process models) and closes it at shutdown."""

from codegen_site.llm.errors import LLMError, LLMModelNotFound, LLMUnavailable, LLMUpstreamError
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.router import classify_task
from codegen_site.llm.service import ChatStream, Completion, LLMService, clear_probe_cache, get_llm
from codegen_site.llm.thinking import Delta, ThinkSplitter

__all__ = [
    "ChatStream", "Completion", "Delta", "LLMError", "LLMModelNotFound", "LLMService", "LLMUnavailable",
    "LLMUpstreamError", "ThinkSplitter", "classify_task", "clear_probe_cache", "get_llm", "llm_resources",
]
