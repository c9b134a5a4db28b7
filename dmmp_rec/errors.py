"""One base for every error about the user's input, so the CLI can catch them all in one place.

A `DmmpError` means "the input (config, data, plan, checkpoint, request, option) is wrong", not
"the program is wrong": the CLI prints its message as one line on stderr and exits with
`EXIT_USER_ERROR`, with no traceback. So does an `OSError` that names a file (an output folder
that does not exist, a file without permission): the path is the user's to fix. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class DmmpError(Exception):
    """Base of every project error; its message names the file, row, key or option at fault."""


class InputError(DmmpError, ValueError):
    """An option value, input path or data set the command cannot use (no more specific class)."""


class MissingInputError(DmmpError, FileNotFoundError):
    """An input file or directory the command needs is not there (still a FileNotFoundError,
    so code that tolerates a missing file keeps doing so)."""
