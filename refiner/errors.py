"""Errors that end a run with a documented exit code and one line on stderr."""

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Terms:
    """How an input check's message names what the caller can change: the command line's
    options, or the Python API's arguments (an API caller has no flags to pass)."""

    allow_inactive: str  # accepting a finding that is not ACTIVE
    pages: str  # where the pages of one finding were given
    another_page: str  # how one more page is given
    deadline: str  # the bound of the whole run


CLI_TERMS = Terms("--allow-inactive-finding", "the --unused files", "each as another --unused",
                  "--deadline")
API_TERMS = Terms("allow_inactive_finding=True", "the finding's pages",
                  "all in one list of pages", "deadline=")
