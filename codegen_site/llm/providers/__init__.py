"""LLM providers behind one async interface (providers.base.Provider): Ollama and OpenAI-compatible
servers over HTTP (providers.http holds what they share), and the bundled model in-process.
Errors are raised as LLMUnavailable (503) or LLMModelNotFound / LLMUpstreamError (502)."""

from codegen_site.llm.providers.base import COMPLETION, EMBEDDING, Messages, ModelInfo, Provider
from codegen_site.llm.providers.embedded import EmbeddedProvider, bundled_model_path
from codegen_site.llm.providers.http import HTTPProvider
from codegen_site.llm.providers.ollama import OllamaProvider
from codegen_site.llm.providers.openai_compatible import OpenAICompatibleProvider

__all__ = ["COMPLETION", "EMBEDDING", "EmbeddedProvider", "HTTPProvider", "Messages", "ModelInfo", "OllamaProvider",
           "OpenAICompatibleProvider", "Provider", "bundled_model_path"]
