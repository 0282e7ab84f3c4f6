"""chatcli: a terminal chat client for OpenAI-compatible LLM APIs."""

__version__ = "0.1.0"
