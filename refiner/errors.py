"""Errors that end a run with a documented exit code and one line on stderr."""

EXIT_OK = 0
EXIT_REJECTED = 1  # verify: the refinement is unsound or incomplete
EXIT_BAD_INPUT = 2  # bad usage or bad input
EXIT_PROOF_FAILED = 3  # the proof failed or the solver gave no answer in time


class InputError(Exception):
    """Bad input: the message is shown to the user as one line."""
