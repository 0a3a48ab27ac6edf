"""The backend for any OpenAI-compatible chat-completions server."""

from .backend import OpenAIBackend, create

__all__ = ["OpenAIBackend", "create"]
