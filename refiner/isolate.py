"""Run proof work in a child process: a solver that aborts, or a run past its deadline, is "no proof"."""

from __future__ import annotations

import faulthandler
import multiprocessing
import signal
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_DEADLINE_SECONDS = 300.0


class NoProof(Exception):
    """The work ended without an answer: the child died (a solver abort) or the deadline passed.
    The message is one line for the user."""


def deadline_after(seconds: float | None) -> float | None:
    """The monotonic time by which a run must be done (None: no deadline)."""
    return None if seconds is None else time.monotonic() + seconds


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def run_isolated(function: Callable[..., T], *args, deadline: float | None,
                 deadline_name: str = "--deadline") -> T:
    """function(*args) computed in a child process and returned here.

    Z3 is C++ and can abort or crash on hostile input (assertions in ast.cpp were seen), which
    would take the whole tool down with a signal; in a child it is an answer: no proof. The
    child is killed when the deadline passes, which also bounds runs whose every query obeys
    its own timeout but whose queries are many. Exceptions raised by function (bad input, for
    example) are raised here unchanged. The child is forked where the platform allows it (the
    catalog and parsed inputs are shared, not copied); elsewhere it is spawned."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, function, args), daemon=True)
    child.start()
    sender.close()
    try:
        wait = remaining(deadline)
        if not receiver.poll(wait):
            raise NoProof(f"no answer before the deadline ({deadline_name}): nothing is proven")
        try:
            status, value = receiver.recv()
        except EOFError:
            child.join(5)
            raise NoProof(f"the solver process died ({_death(child.exitcode)}): nothing is proven") \
                from None
        if status == "error":
            raise value
        return value
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)


def _child(sender, function, args) -> None:
    # A Ctrl-C reaches the whole process group: the parent reports it, the child just ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.disable()  # a crash is reported by the parent in one line, not as a dump
    try:
        result = ("ok", function(*args))
    except BaseException as error:  # carried to the parent, which decides what it means
        result = ("error", error)
    try:
        sender.send(result)
    except Exception as error:  # an exception that cannot be pickled: say what it was
        sender.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))
    sender.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
