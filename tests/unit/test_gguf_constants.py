"""The GGUF constants come from the gguf package's own table, without importing the package."""
import subprocess
import sys

import gguf

from llamaman.models import gguf_constants


def test_the_tables_are_the_gguf_package_ones():
    assert {int(k): v for k, v in gguf_constants.GGML_QUANT_SIZES.items()} == \
        {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()}
    for ours, theirs in ((gguf_constants.GGUFValueType, gguf.GGUFValueType),
                         (gguf_constants.LlamaFileType, gguf.LlamaFileType),
                         (gguf_constants.GGMLQuantizationType, gguf.GGMLQuantizationType)):
        assert {m.name: m.value for m in ours} == {m.name: m.value for m in theirs}


def test_reading_models_loads_neither_gguf_nor_numpy():
    # numpy and gguf's reader cost ~18 MB of RSS in every worker for a few constants
    code = ("import sys, llamaman.models.entries, llamaman.models.gguf_header, llamaman.compat.localai_memory;"
            "print(sorted(m for m in ('gguf', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
