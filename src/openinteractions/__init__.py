"""OpenInteractions: Google's Interactions API, served from open models."""

__version__ = "0.1.0"
