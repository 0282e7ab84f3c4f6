"""The README against the code: every flag, config key and slash command is documented, and
nothing documented is gone. Read from the parser, SETTINGS and the registry, so neither side
can drift without this failing."""

from __future__ import annotations

import re
from pathlib import Path

from chatcli.cli.main import build_parser
from chatcli.commands import REGISTRY
from chatcli.config.table import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def table_cells(header: str) -> list[str]:
    """The first cell of each row of the table under the header row `header`."""
    cells = []
    for line in README.split(header + "\n", 1)[1].splitlines()[1:]:  # past the | --- | line
        if not line.startswith("| "):
            break
        cells.append(line[2:].split(" | ", 1)[0])
    return cells


def test_every_flag_is_in_the_readme() -> None:
    flags = {f for a in build_parser()._actions for f in a.option_strings if f.startswith("--") and f != "--help"}
    missing = sorted(f for f in flags if not re.search(rf"`{re.escape(f)}[ `=]", README))
    assert missing == [], f"flags not in README.md: {missing}"


def test_every_config_key_is_in_the_readme_table() -> None:
    documented = {cell.strip("`") for cell in table_cells("| key | default | meaning |")}
    keys = {s.key for s in SETTINGS} | {"redact", "headers", "block_words", "tools", "tool_ask", "tool_roots"}
    assert keys - documented == set(), f"config keys not in README.md's table: {sorted(keys - documented)}"
    assert documented - keys == set(), f"README.md documents keys that do not exist: {sorted(documented - keys)}"


def test_every_slash_command_is_in_the_readme_table_and_no_other() -> None:
    documented = {cell.strip("`").split()[0] for cell in table_cells("| command | what it does |")}
    commands = {f"/{name}" for name in REGISTRY.commands}
    assert commands - documented == set(), f"slash commands not in README.md: {sorted(commands - documented)}"
    assert documented - commands == set(), f"README.md documents commands that do not exist: {sorted(documented - commands)}"


def test_each_documented_command_shows_the_arguments_it_takes() -> None:
    for cell in table_cells("| command | what it does |"):
        name, *args = cell.strip("`").split(" ", 1)
        command = REGISTRY.commands[name.removeprefix("/")]
        assert (args[0] if args else "") == command.args.replace("|", "\\|"), (cell, command.args)
