"""What the command line reads from the user (IR files, constants files) and how a mistake in
it is reported: `CommandError`, one line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import os
import sys


class CommandError(Exception):
    """A mistake in what the command was asked to do: printed as one line, no traceback.

    `location` (FILE or FILE:LINE:COLUMN) replaces the program name at the start of the line."""

    def __init__(self, message: str, status: int = 1, location: str | None = None):
        super().__init__(message)
        self.status, self.location = status, location


def read_text(path: str) -> str:
    """The text of an IR file (- for standard input); CommandError if it is missing or not text."""
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise CommandError("no such file", location=name) from None
    except IsADirectoryError:
        raise CommandError("is a directory, not a file", location=name) from None
    except OSError as e:
        raise CommandError(f"cannot read it: {e.strerror or e}", location=name) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CommandError(f"not a text file (byte {e.start} is not UTF-8)", location=name) from None
    nul = text.find("\0")
    if nul >= 0:
        raise CommandError(f"not a text file (a NUL byte at offset {nul})", location=name)
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as reading in text mode does


def parse_error_line(path: str, error, first_line: int = 0) -> str:
    """`FILE:LINE:COLUMN: error: message` for a ParseError in a chunk that starts after `first_line`."""
    message = str(error).split(": ", 1)[1]
    return f"{'<stdin>' if path == '-' else path}:{error.line + first_line}:{error.column}: error: {message}"


def load_constants(path: str, explicit: str | None) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    candidates = [explicit] if explicit else []
    if path != "-" and not explicit:
        candidates += [os.path.splitext(path)[0] + ".safetensors",
                       os.path.join(os.path.dirname(path) or ".", "constants.safetensors")]
    if explicit and not os.path.isfile(explicit):
        problem = "is a directory, not a safetensors file" if os.path.isdir(explicit) else "no such file"
        raise CommandError(f"constants file {problem}", location=explicit)
    for c in candidates:
        if os.path.isfile(c):
            try:
                return load_file(c)
            except (OSError, SafetensorError) as e:
                raise CommandError(f"cannot read constants: {e}", location=c) from None
    return {}
