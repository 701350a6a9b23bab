"""The `embedlimit` command, run in-process through `main()` and once as an installed script."""

from __future__ import annotations

import subprocess
import sys

import pytest

from embedlimit import __version__
from embedlimit._cli import main


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"embedlimit {__version__}"


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: embedlimit" in capsys.readouterr().out


def test_cli_unknown_option_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--no-such-option"])
    assert exit_info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_cli_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "embedlimit", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: embedlimit" in result.stdout
