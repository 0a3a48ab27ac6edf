"""Server-side tools: what the server runs itself when a model calls google_search, code_execution or
url_context."""
