"""The HTTP layer: thin. It authenticates, parses, calls the service and writes event logs out as SSE."""
