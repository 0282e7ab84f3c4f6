"""The front door: argv, modes and subcommands, the REPL, one-shot mode, schemas, completion, the reports.

Importing it loads no rich, prompt_toolkit, openai or sqlite3: `--help` stays fast.
"""
