"""A fast, one-process LLM gateway on SQLite."""

__version__ = "0.1.0"
