"""The wire schema: every request, resource and event of the Interactions API, as pydantic models."""
