"""File search stores (Google's ``fileSearchStores``): documents chunked and indexed for hybrid retrieval,
searched by the ``file_search`` tool (tools/file_search.py)."""
