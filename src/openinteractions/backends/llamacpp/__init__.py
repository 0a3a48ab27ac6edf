"""The embedded llama.cpp backend."""

from .backend import LlamaCppBackend, create

__all__ = ["LlamaCppBackend", "create"]
