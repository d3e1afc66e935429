"""llmctl: run an LLM on one GPU under control."""

__version__ = "0.1.0"
