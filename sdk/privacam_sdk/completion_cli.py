"""`privacam completion bash|zsh|tcsh`: a shell completion script for the whole CLI.

The script is made from the CLI's own argparse parser by shtab, so every command, option and
choice completes as the parser defines it, and a new command completes without touching this
file. File and folder arguments complete as paths, and ``--profile`` as the names of the local
profiles (read from ``$PRIVACAM_HOME/profiles`` when Tab is pressed: nothing runs Python then).

    privacam completion bash > ~/.local/share/bash-completion/completions/privacam
    privacam completion zsh > "${fpath[1]}/_privacam"     # then: autoload -U compinit && compinit
    eval "$(privacam completion bash)"                     # this shell only
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

SHELLS = ("bash", "zsh", "tcsh")

PROFILES = {
    "bash": "_privacam_profiles",
    "zsh": "_privacam_profiles",
    # tcsh has no function to call: it completes words from a command's output.
    "tcsh": "`ls ${PRIVACAM_HOME:-$HOME/.privacam}/profiles`",
}
"""How each shell completes ``--profile``: the names of the local profiles."""

PREAMBLE = {
    "bash": """
# The profiles under $PRIVACAM_HOME (default ~/.privacam): privacam --profile <Tab>
_privacam_profiles() {
  local dir="${PRIVACAM_HOME:-$HOME/.privacam}/profiles" p
  for p in "$dir"/*/profile.json; do
    [ -e "$p" ] || continue
    p="${p%/profile.json}"
    p="${p##*/}"
    [[ $p == "$1"* ]] && echo "$p"
  done
}
""",
    "zsh": """
# The profiles under $PRIVACAM_HOME (default ~/.privacam): privacam --profile <Tab>
_privacam_profiles() {
  local dir="${PRIVACAM_HOME:-$HOME/.privacam}/profiles"
  compadd -- ${dir}/*/profile.json(N:h:t)
}
""",
}


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, tcsh)",
        description="Print a completion script for the privacam command. Bash: "
        "privacam completion bash > ~/.local/share/bash-completion/completions/privacam; "
        'zsh: privacam completion zsh > "${fpath[1]}/_privacam"; '
        'this shell only: eval "$(privacam completion bash)".',
    )
    completion.add_argument("shell", choices=SHELLS)


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every argument of ``parser`` and of its subcommands, depth first."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                yield from _actions(sub)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser`` for ``shell``."""
    import shtab  # only here: the rest of the CLI does not need it

    for action in _actions(parser):
        if action.dest == "profile":
            action.complete = PROFILES  # type: ignore[attr-defined]
        elif action.dest == "home":
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.type is Path:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    completed: str = shtab.complete(parser, shell=shell, preamble=PREAMBLE.get(shell, ""))
    return completed


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        text = script(parser, args.shell)
    except ImportError:
        print(
            "privacam: completion needs the shtab package: pip install shtab==1.13.0",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


__all__ = ["SHELLS", "add_commands", "run", "script"]
