"""Errors that are the user's to fix, and how the command-line tools report them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class UserError(Exception):
    """A problem with the user's input (paths, files, config), with the fix in its message.

    The command-line entry points print the message alone, without a traceback, and exit with
    status :attr:`exit_code` (2: the input is wrong).
    """

    exit_code = 2


class StageFailedError(UserError):
    """A stage run in its own process (``qmimic.train``) failed; that process has already said
    why. The command exits with the stage's own status."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.exit_code = returncode if returncode > 0 else 1


def find_user_error(exc: BaseException) -> UserError | None:
    """The :class:`UserError` behind ``exc``, looking through wrapping exceptions.

    Hydra's ``instantiate`` and Lightning re-raise what a constructor or hook raised inside
    their own exception types; the original is kept as ``__cause__`` or ``__context__``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


INTERRUPTED = "interrupted (Ctrl-C); the files already written are kept"
RESUMABLE = (
    "interrupted (Ctrl-C); finished runs are kept: run the same command again to resume (a cut "
    "run restarts its epoch from its last.ckpt)"
)


def exit_on_user_error(
    func: Callable[P, R] | None = None, *, on_interrupt: str = INTERRUPTED
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Run ``func``; on a :class:`UserError` print ``error: <message>`` and exit with status 2,
    on Ctrl-C print ``on_interrupt`` and exit with status 130 (the shell's code for SIGINT),
    without a traceback either way. Use bare (``@exit_on_user_error``) or with a message
    (``@exit_on_user_error(on_interrupt=RESUMABLE)``). A Ctrl-C inside Lightning's ``fit``,
    ``test`` or ``predict`` never gets here: Lightning shuts down itself and exits with status 1
    (the training run's log says how to resume)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except KeyboardInterrupt:
                print(on_interrupt, file=sys.stderr, flush=True)
                raise SystemExit(130) from None
            except Exception as exc:
                user_error = find_user_error(exc)
                if user_error is None:
                    raise
                print(f"error: {user_error}", file=sys.stderr, flush=True)
                raise SystemExit(user_error.exit_code) from None

        return wrapper

    return decorate if func is None else decorate(func)
