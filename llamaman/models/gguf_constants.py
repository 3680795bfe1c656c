"""The `gguf` package's format constants, loaded without the package itself.

`import gguf` runs its __init__, which imports numpy and the package's reader and writer: about
18 MB of RSS in every worker, for a few enums and a table. Its `constants` module needs only the
standard library, so it is loaded here on its own from the installed package, keeping its
values in step with the pinned `gguf` release.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "llamaman._gguf_constants"


def _load():
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    package = importlib.util.find_spec("gguf")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the gguf package is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "constants.py"
    spec = importlib.util.spec_from_file_location(_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module  # registered first, as the import system does (dataclasses look it up)
    spec.loader.exec_module(module)
    return module


_constants = _load()
GGML_QUANT_SIZES = _constants.GGML_QUANT_SIZES
GGMLQuantizationType = _constants.GGMLQuantizationType
GGUFValueType = _constants.GGUFValueType
LlamaFileType = _constants.LlamaFileType
