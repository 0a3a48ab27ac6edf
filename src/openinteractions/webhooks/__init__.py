"""Webhooks, as in Google's Gemini API: registered webhooks and a request's ``webhook_config``, events when an
interaction ends, signed per Standard Webhooks and delivered at least once from an outbox in the store's
database. See docs/webhooks.md."""

from .service import Webhooks

__all__ = ["Webhooks"]
