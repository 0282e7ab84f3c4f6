"""Shell completion: chatcli --completion bash|zsh|fish prints a script made from the parsers,
so it offers every flag there is; -p completes the config's profile names as it runs. After a
subcommand (which may follow global flags: chatcli --db X sessions ...), it offers that
subcommand's own actions and flags."""

from __future__ import annotations

import argparse
from typing import Mapping

SUBCOMMANDS = {"sessions": "saved sessions", "usage": "tokens and cost", "models": "the server's models",
               "config": "the config file: path, show, check, profiles", "batch": "many asks from a file"}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _actions(parser: argparse.ArgumentParser) -> list[str]:
    """A subcommand's actions (sessions list, config check), the words that may follow it."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return list(a.choices)
        if not a.option_strings and a.choices:
            return list(a.choices)
    return []


def completion_script(parser: argparse.ArgumentParser, shell: str,
                      subcommands: Mapping[str, argparse.ArgumentParser] = {}) -> str:
    """A completion script for the shell, made from the parsers, so it knows every flag there is."""
    options = _options(parser)
    flags = sorted(flag for a in options for flag in a.option_strings)
    words = " ".join([*SUBCOMMANDS, *flags])
    if shell == "fish":
        return _fish_script(options, subcommands)
    choices = "\n".join(
        f"    {'|'.join(a.option_strings)}) COMPREPLY=($(compgen -W '{' '.join(a.choices)}' -- \"$cur\")); return ;;"
        for a in options if a.choices
    )
    files = "|".join(f for a in options if str(a.metavar or "").startswith("PATH") for f in a.option_strings)
    after = "\n".join(
        f"    {name}) actions='{' '.join(_actions(sub))}'; "
        f"words='{' '.join(sorted(f for a in _options(sub) for f in a.option_strings))}' ;;"
        for name, sub in subcommands.items()
    )
    bash = f"""_chatcli() {{
  local cur prev i j words actions="" sub=""
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  case "$prev" in
{choices}
    {files}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -p|--profile) COMPREPLY=($(compgen -W "$(chatcli config profiles 2>/dev/null)" -- "$cur")); return ;;
  esac
  for ((i=1; i<COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in {'|'.join(SUBCOMMANDS)}) sub="${{COMP_WORDS[i]}}"; break ;; esac
  done
  words='{words}'
  case "$sub" in
{after}
  esac
  for ((j=i+1; j<COMP_CWORD; j++)); do  # an action given already: only the flags are left
    [[ " $actions " == *" ${{COMP_WORDS[j]}} "* ]] && actions=""
  done
  [[ -n $sub ]] && words="$actions $words"
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _chatcli chatcli
"""
    if shell == "zsh":
        return "#compdef chatcli\nautoload -U +X bashcompinit && bashcompinit\n" + bash
    return bash


def _fish_script(options: list[argparse.Action], subcommands: Mapping[str, argparse.ArgumentParser]) -> str:
    """fish's completions: one `complete` line per subcommand, action set and flag."""
    def quoted(text: str) -> str:  # fish: nothing expands inside single quotes
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    lines = [f"complete -c chatcli -n __fish_use_subcommand -a {name} -d {quoted(desc)}" for name, desc in SUBCOMMANDS.items()]
    for name, sub in subcommands.items():
        if _actions(sub):
            lines.append(f"complete -c chatcli -n {quoted('__fish_seen_subcommand_from ' + name)} -x -a {quoted(' '.join(_actions(sub)))}")
    for a in options:
        long = next((f[2:] for f in a.option_strings if f.startswith("--")), None)
        short = next((f[1:] for f in a.option_strings if len(f) == 2), None)
        parts = ["complete -c chatcli", f"-l {long}" if long else "", f"-s {short}" if short else ""]
        if a.choices:
            parts.append(f"-x -a {quoted(' '.join(a.choices))}")
        elif a.dest == "profile":
            parts.append("-x -a '(chatcli config profiles 2>/dev/null)'")
        elif a.nargs != 0:
            parts.append("-r")
        lines.append(" ".join(p for p in parts if p) + f" -d {quoted((a.help or '').split(';')[0][:60])}")
    return "\n".join(lines) + "\n"
