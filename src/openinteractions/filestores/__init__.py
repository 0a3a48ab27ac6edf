"""File search stores (Google's ``fileSearchStores``) and the ``file_search`` tool that searches them."""

from .service import FileStores
from .tool import FileSearch

__all__ = ["FileSearch", "FileStores"]
