"""The terminal (rich and prompt_toolkit are imported here alone): renderers, views, the prompt, the terminal device.

Never imports app, llm, store, config or cli.
"""
