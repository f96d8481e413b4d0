"""Errors that end a run with a documented exit code and one line on stderr."""

EXIT_OK = 0
EXIT_REJECTED = 1  # verify: rejected; refine --exit-code: the refinement changes the policy
EXIT_BAD_INPUT = 2  # bad usage or bad input
EXIT_PROOF_FAILED = 3  # the proof failed or the solver gave no answer in time
EXIT_DETACH = 4  # refine: no statement is left, the policy is to be detached
EXIT_OVER_LIMIT = 5  # refine --fail-over-limit: the result is over AWS's size limit
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
EXIT_BROKEN_PIPE = 141  # the reader of standard output went away (128 + SIGPIPE)


class InputError(Exception):
    """Bad input: the message is shown to the user as one line."""
