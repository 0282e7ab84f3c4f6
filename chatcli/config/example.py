"""The config as TOML text: config.example.toml, generated from SETTINGS so the two never
drift, and the values `chatcli config show` prints."""

from __future__ import annotations

from typing import Any

from chatcli.config.table import SETTINGS


def example_toml() -> str:
    """The text of config.example.toml, generated from SETTINGS so the two never drift."""
    lines = [
        "# chatcli configuration: copy to $XDG_CONFIG_HOME/chatcli/config.toml (~/.config/chatcli/config.toml).",
        "# Precedence: defaults < this file < .env < environment (CHATCLI_<KEY>, OPENAI_*) < flags.",
        "# Every key is shown with its default; unset keys are commented out.",
        "",
    ]
    for s in SETTINGS:
        lines.append(f"# {s.help} Allowed: {s.allowed()}. Environment: {s.env_var}.")
        if s.default is None:
            lines.append(f"# {s.key} = {toml_value(s.example)}   (default: unset)")
        else:
            lines.append(f"{s.key} = {toml_value(s.default)}")
        lines.append("")
    lines += [*EXAMPLE_TABLES.splitlines(), *EXAMPLE_PROFILES.splitlines()]
    return "\n".join(lines)


# The tables after the settings: [models], [prices], redact, block_words, [budget], [mcp].
EXAMPLE_TABLES = """\
# Per-model figures, for a model chatcli has no figures for, or to correct them.
# encoding is the tiktoken encoding used to count its tokens.
# [models."llama3.2"]
# context_window = 131072
# max_output_tokens = 4096
# encoding = "o200k_base"

# What a model takes, for a reasoning model chatcli does not know, or to correct its table:
# the name the reply's limit goes under (max_tokens or max_completion_tokens), the parameters
# it refuses (left out of its requests), the reasoning_effort values it takes, and its effort.
# [models."my-reasoner"]
# max_tokens_param = "max_completion_tokens"
# unsupported = ["temperature", "top_p", "presence_penalty", "frequency_penalty"]
# efforts = ["low", "medium", "high"]
# reasoning_effort = "high"

# A model that takes no images: an image for it is refused before anything is sent.
# [models."llama3.2"]
# vision = false

# Prices in USD per million tokens, to add a model or correct the built-in table
# (OpenAI's list prices, taken 2025-08). Batch jobs (chatcli batch run --via api) cost
# batch_input and batch_output; unset, half of input and output, as OpenAI's Batch API charges.
# [prices."my-model"]
# input = 0.50
# cached_input = 0.25
# output = 1.50
# batch_input = 0.25
# batch_output = 0.75

# Personal data scrubbed from your messages before they are sent, each to a placeholder
# such as [EMAIL_REDACTED]; chatcli says what it scrubbed. Environment: CHATCLI_REDACT=email,phone.
# Kinds: email, phone, id_card (mainland China resident ID), credit_card, api_key.
# redact = ["email", "phone", "id_card", "credit_card", "api_key"]

# The content filter (off unless set): a reply that holds one of these words or phrases is
# withheld, shown as [reply withheld: it contains a blocked word], and saved whole, marked filtered.
# Case, full-width forms and invisible characters do not hide a word; a word in a spaced script
# matches whole words only, a Chinese, Japanese, Thai or Korean word anywhere. block_words_file adds more.
# block_words = ["example", "two words", "禁止"]

# Tools the model may call, off unless named here, in a profile or with --tools: now (and the
# built-in and MCP tools). Read-only tools run without asking; tool_ask makes some (or "all") ask.
# tools = ["now"]
# tool_ask = ["now"]

# The directories the read_file, list_dir and grep tools may read under (symlinks are followed
# before checking, so none leads out). Unset, the working directory chatcli starts in.
# tool_roots = [".", "~/notes"]

# Spending caps, checked before each request; at 80% of a cap chatcli warns once.
# [budget]
# daily_usd = 2.00
# monthly_usd = 20.00
# daily_tokens = 500000

# MCP servers: each [mcp.NAME] starts a Model Context Protocol server over stdio when one of its
# tools is turned on (--tools files.* or files.read_file, or tools = [...]). Its tools are NAME.tool
# and ask before they run. env is added to the few variables a server gets (HOME, PATH, ...; never
# your API key); cwd is beside this file when relative; timeout is the seconds a call may take,
# start_timeout the seconds the server may take to start.
# [mcp.files]
# command = "npx"
# args = ["-y", "@modelcontextprotocol/server-filesystem", "."]
# env = { "LOG_LEVEL" = "warn" }
# cwd = "."
# timeout = 60
# start_timeout = 30

"""


EXAMPLE_PROFILES = """\
# Extra HTTP headers for every request go in a table: headers = { "X-Title" = "chatcli" }.

# Profiles: named sets of the keys above, one per server. Choose one with --profile NAME (-p),
# CHATCLI_PROFILE, profile = "NAME" at the top of this file, or /profile NAME in a session.
# A profile goes over this file, .env and the environment, and under flags. One with a base_url
# of its own takes its key, headers and Azure settings only from itself, so a key meant for one
# provider never goes to another. A local server needs no key.
[profiles.openai]
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
model = "gpt-4o-mini"

[profiles.azure]
api_type = "azure"
base_url = "https://YOUR-RESOURCE.openai.azure.com"
api_version = "2024-10-21"
api_key_env = "AZURE_OPENAI_API_KEY"
model = "gpt-4o-mini"  # your deployment's name (or set azure_deployment)

[profiles.openrouter]
base_url = "https://openrouter.ai/api/v1"
api_key_env = "OPENROUTER_API_KEY"
model = "openai/gpt-4o-mini"
headers = { "HTTP-Referer" = "https://github.com/chatcli/chatcli", "X-Title" = "chatcli" }

[profiles.ollama]
base_url = "http://localhost:11434/v1"
model = "llama3.2"

[profiles.ollama.models."llama3.2"]
context_window = 131072

[profiles.vllm]
base_url = "http://localhost:8000/v1"
model = "Qwen/Qwen2.5-7B-Instruct"

[profiles.lmstudio]
base_url = "http://localhost:1234/v1"
model = "qwen2.5-7b-instruct"
"""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


