"""llamaman: a manager for llama.cpp llama-server instances."""

__version__ = "0.1.0"
