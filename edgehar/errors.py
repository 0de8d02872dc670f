"""The root of every error a user can cause (bad option, file, device, bundle).

The CLI prints these as one line and exits non-zero; anything else is a bug and keeps
its traceback. Each layer subclasses it with errors that carry the offending value.
"""


class EdgeharError(Exception):
    """An error in what the user asked for, reported as one line."""


class EdgeharWarning(UserWarning):
    """Something the user should know that did not stop the work (a repaired or cleaned
    input); the CLI prints it as one line, like an error."""
