"""Shell completion: chatcli --completion bash|zsh|fish prints a script made from the parser,
so it offers every flag there is; -p completes the config's profile names as it runs."""

from __future__ import annotations

import argparse

SUBCOMMANDS = {"sessions": "saved sessions", "usage": "tokens and cost", "models": "the server's models",
               "config": "the config file: path, show, check, profiles"}


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A completion script for the shell, made from the parser, so it knows every flag there is."""
    options = [a for a in parser._actions if a.option_strings]
    flags = sorted(flag for a in options for flag in a.option_strings)
    words = " ".join([*SUBCOMMANDS, *flags])
    if shell == "fish":
        def quoted(text: str) -> str:  # fish: nothing expands inside single quotes
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

        lines = [f"complete -c chatcli -n __fish_use_subcommand -a {name} -d {quoted(desc)}" for name, desc in SUBCOMMANDS.items()]
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
    choices = "\n".join(
        f"    {'|'.join(a.option_strings)}) COMPREPLY=($(compgen -W '{' '.join(a.choices)}' -- \"$cur\")); return ;;"
        for a in options if a.choices
    )
    files = "|".join(f for a in options if a.metavar == "PATH" for f in a.option_strings)
    bash = f"""_chatcli() {{
  local cur prev
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  case "$prev" in
{choices}
    {files}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -p|--profile) COMPREPLY=($(compgen -W "$(chatcli config profiles 2>/dev/null)" -- "$cur")); return ;;
  esac
  if [[ $COMP_CWORD -eq 2 && ${{COMP_WORDS[1]}} == config ]]; then
    COMPREPLY=($(compgen -W 'path show check profiles' -- "$cur")); return
  fi
  COMPREPLY=($(compgen -W '{words}' -- "$cur"))
}}
complete -o default -F _chatcli chatcli
"""
    if shell == "zsh":
        return "#compdef chatcli\nautoload -U +X bashcompinit && bashcompinit\n" + bash
    return bash
