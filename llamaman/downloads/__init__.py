"""HuggingFace downloads: jobs, Range transfers, throttling, retry, llamactl's model API."""
