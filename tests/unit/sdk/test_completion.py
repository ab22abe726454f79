"""`privacam completion bash|zsh|tcsh`: the script comes from the CLI's own parser, and a real
bash completes commands, options, choices and profile names with it (zsh too, where installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from privacam_sdk import cli

BASH_DRIVER = """
source "$1"
complete_words() {
  COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
  _shtab_privacam
  printf '%s\\n' "${COMPREPLY[*]}"
}
complete_words privacam acc
complete_words privacam --profile ""
complete_words privacam access-log list --js
complete_words privacam privacy some-camera ""
complete_words privacam completion ""
complete_words privacam clips ""
"""


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["completion", shell])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for name in ("owner", "front-door"):
        (home / "profiles" / name).mkdir(parents=True)
        (home / "profiles" / name / "profile.json").write_text("{}")
    (home / "profiles" / "not-a-profile").mkdir()  # no profile.json: not offered
    return home


def test_bash_completes_commands_options_choices_and_profiles(
    tmp_path: Path, profiles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "privacam.bash"
    script.write_text(_script("bash", capsys))
    lines = subprocess.run(
        ["bash", "-c", BASH_DRIVER, "driver", str(script)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PRIVACAM_HOME": str(profiles), "HOME": str(tmp_path)},
        timeout=30,
    ).stdout.splitlines()
    assert lines[0].split() == ["access-log", "account"]
    assert sorted(lines[1].split()) == ["front-door", "owner"]
    assert lines[2].split() == ["--json"]
    assert lines[3].split() == ["on", "off", "until", "schedule", "status"]
    assert lines[4].split() == ["bash", "zsh", "tcsh"]
    assert {"upload", "list", "download"} <= set(lines[5].split())


def test_every_command_is_in_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    script = _script("bash", capsys)
    for command in ("export", "account", "consent", "unshare", "camera", "certificate", "talk"):
        assert command in script
    # Path arguments complete as files, --home as a folder.
    assert "_shtab_privacam_profile_import___ca_COMPGEN=_shtab_compgen_files" in script
    assert "___home_COMPGEN=_shtab_compgen_dirs" in script


def test_zsh_script_parses_and_lists_profiles(
    tmp_path: Path, profiles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # zsh comes with the test prerequisites (stack/install.sh); missing, this fails.
    assert shutil.which("zsh"), "zsh is not installed: run `make stack-install`"
    script = _script("zsh", capsys)
    assert script.startswith("#compdef privacam")
    path = tmp_path / "_privacam"
    path.write_text(script)
    subprocess.run(["zsh", "-n", str(path)], check=True, timeout=30)
    # The profile completer alone, with compadd replaced by a printer.
    preamble = script[script.index("_privacam_profiles() {") :]
    preamble = preamble[: preamble.index("\n}\n") + 3]
    listed = subprocess.run(
        ["zsh", "-f", "-c", 'compadd() { print -l -- "$@" }\n' + preamble + "_privacam_profiles"],
        capture_output=True,
        text=True,
        check=True,
        env={"PRIVACAM_HOME": str(profiles), "HOME": str(tmp_path)},
        timeout=30,
    ).stdout.split()
    assert sorted(p for p in listed if p != "--") == ["front-door", "owner"]


def test_tcsh_script_and_an_unknown_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert "complete privacam" in _script("tcsh", capsys)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["completion", "fish"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err
