"""Config files with profiles, for the tests of -p, /profile and `config check`."""

from __future__ import annotations

from pathlib import Path

from tests.support.server import ChatServer


def write_config(text: str) -> Path:
    path = Path.home() / "config" / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def two_profiles(srv: ChatServer, other: ChatServer, top: str = "") -> Path:
    return write_config(f"""{top}
[profiles.main]
base_url = "{srv.base_url}"
api_key_env = "MAIN_KEY"
model = "gpt-4o-mini"
headers = {{ "X-Profile" = "main" }}

[profiles.other]
base_url = "{other.base_url}"
api_key_env = "OTHER_KEY"
model = "llama3.2"
headers = {{ "X-Profile" = "other", "X-Title" = "chatcli" }}
""")
