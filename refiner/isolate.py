"""Run proof work in a child process: a solver that aborts, or a run past its deadline, is "no proof"."""

from __future__ import annotations

import contextlib
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
                 deadline_name: str = "--deadline", prover: Prover | None = None) -> T:
    """function(*args) computed in a child process and returned here.

    Z3 is C++ and can abort or crash on hostile input (assertions in ast.cpp were seen), which
    would take the whole tool down with a signal; in a child it is an answer: no proof. The
    child is killed when the deadline passes, which also bounds runs whose every query obeys
    its own timeout but whose queries are many. Exceptions raised by function (bad input, for
    example) are raised here unchanged. The child is forked where the platform allows it (the
    catalog and parsed inputs are shared, not copied); elsewhere it is spawned. prover: a
    child started earlier (start_prover), which then does the work instead."""
    if prover is not None:
        return prover.run(function, args, deadline, deadline_name)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, function, args), daemon=True)
    child.start()
    sender.close()
    try:
        return _answer(receiver, child, deadline, deadline_name)
    finally:
        receiver.close()
        _end(child)


def _answer(receiver, child, deadline: float | None, deadline_name: str):
    """The child's result, its exception raised here, or NoProof (deadline, death)."""
    if not receiver.poll(remaining(deadline)):
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


def _end(child) -> None:
    if child.is_alive():
        child.kill()
    child.join(5)


def _child(sender, function, args) -> None:
    _quiet_child()
    _compute_and_send(sender, function, args)


def _quiet_child() -> None:
    # A Ctrl-C reaches the whole process group: the parent reports it, the child just ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.disable()  # a crash is reported by the parent in one line, not as a dump


def _compute_and_send(sender, function, args) -> None:
    try:
        result = ("ok", function(*args))
    except BaseException as error:  # carried to the parent, which decides what it means
        result = ("error", error)
    try:
        sender.send(result)
    except Exception as error:  # an exception that cannot be pickled: say what it was
        sender.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))
    sender.close()


class Prover:
    """A proof child forked before the run reads its inputs: it loads what prepare() loads
    (the solver, the modules the proof runs) while the parent reads them on the other core,
    then runs the one function the parent hands it, exactly as run_isolated's child would."""

    def __init__(self, prepare: Callable[[], None]):
        context = multiprocessing.get_context("fork")
        jobs_reader, self._jobs = context.Pipe(duplex=False)
        self._answers, answers_writer = context.Pipe(duplex=False)
        self.child = context.Process(target=_serve, args=(jobs_reader, answers_writer, prepare),
                                     daemon=True)
        self.child.start()
        jobs_reader.close()
        answers_writer.close()

    def run(self, function: Callable[..., T], args: tuple, deadline: float | None,
            deadline_name: str) -> T:
        with contextlib.suppress(OSError):  # the child died preparing: _answer says so
            self._jobs.send((function, args))
        try:
            return _answer(self._answers, self.child, deadline, deadline_name)
        finally:
            self.close()

    def close(self) -> None:
        self._jobs.close()
        self._answers.close()
        _end(self.child)


def start_prover(prepare: Callable[[], None]) -> Prover | None:
    """A Prover where processes can be forked (elsewhere None: run_isolated spawns its child
    when the work is ready)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    return Prover(prepare)


def _serve(jobs, answers, prepare) -> None:
    _quiet_child()
    with contextlib.suppress(Exception):  # only a head start: the job loads what it needs
        prepare()
    try:
        function, args = jobs.recv()
    except EOFError:  # the parent ended without work for it (bad input, another path)
        return
    _compute_and_send(answers, function, args)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
