"""How commands end on a user's mistake or a Ctrl-C: one line on stderr, a status code, no
traceback."""

from __future__ import annotations

import pytest

from qmimic.errors import RESUMABLE, UserError, exit_on_user_error


def test_a_user_error_is_one_line_and_status_2(capsys: pytest.CaptureFixture):
    @exit_on_user_error
    def command() -> None:
        raise RuntimeError("while building the datamodule") from UserError("no such root")

    with pytest.raises(SystemExit) as stopped:
        command()
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: no such root\n"


def test_ctrl_c_is_one_line_and_status_130(capsys: pytest.CaptureFixture):
    @exit_on_user_error(on_interrupt=RESUMABLE)
    def pipeline() -> None:
        raise KeyboardInterrupt

    @exit_on_user_error
    def evaluate() -> None:
        raise KeyboardInterrupt

    for command, said in ((pipeline, "run the same command again to resume"), (evaluate, "kept")):
        with pytest.raises(SystemExit) as stopped:
            command()
        assert stopped.value.code == 130
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("interrupted (Ctrl-C)") and said in line


def test_other_failures_keep_their_traceback():
    @exit_on_user_error
    def command() -> None:
        raise ValueError("a bug, not the user's input")

    with pytest.raises(ValueError, match="a bug"):
        command()
