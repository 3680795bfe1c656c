"""The llama-server flags llamaman sets itself, which a user's extra arguments may not set."""

from __future__ import annotations

from llamaman.errors import Invalid

# Flags llamaman owns; every spelling maps to the canonical name used in the error.
MANAGED_FLAGS = {
    "--host": "--host",
    "--port": "--port",
    "--api-key": "--api-key",
    "--api-key-file": "--api-key",
    "-m": "--model",
    "--model": "--model",
    # These load a different model (downloaded from the network) in place of --model.
    "-mu": "--model",
    "--model-url": "--model",
    "-hf": "--model",
    "-hfr": "--model",
    "--hf-repo": "--model",
    "-hff": "--model",
    "--hf-file": "--model",
    "-dr": "--model",
    "--docker-repo": "--model",
}


def check_extra_args(tokens: tuple[str, ...] | list[str]) -> None:
    """Raise Invalid naming the flag when extra args try to set a flag llamaman manages."""
    for token in tokens:
        flag = token.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            raise Invalid(
                f"extra_args may not set {flag}: llamaman manages {MANAGED_FLAGS[flag]} "
                "(--host, --port, --api-key and --model are set per instance)",
                field="extra_args",
                flag=flag,
            )
