"""The wire: the openai SDK (client.py alone imports it), SSE, what each model takes, tokens (tiktoken, in tokens.py alone), prices.

Knows no session, store or terminal.
"""
