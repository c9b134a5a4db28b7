"""Argparse `type=` checks shared by every command, so a bad number stops at parse time.

A value that cannot be right (`--steps -1`, `--world-size 0`, `--recall-target 2`) is refused
while the command line is read, before any config, data or process is touched. Each check
raises `argparse.ArgumentTypeError`; the CLI's parser turns it into an `OptionError`, printed
as one line: `dmmp-rec COMMAND: --option: <what is wrong>, got '<value>'`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from dmmp_rec.errors import InputError

T = TypeVar("T")


class OptionError(InputError):
    """A command-line option the parser refused; `prog` is the command (`dmmp-rec plan`)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


def _integer(text: str, at_least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < at_least:
        raise argparse.ArgumentTypeError(f"must be an integer >= {at_least}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1: counts of steps, ranks, users, rows, K."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0, where 0 means "skip" or "the default"."""
    return _integer(text, 0)


def probability(text: str) -> float:
    """A number in (0, 1], such as a recall target."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def number(text: str) -> float:
    """Any float but NaN; `inf` and `-inf` are allowed (a serving knob's extremes)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be a number (inf / -inf allowed), got {text!r}")
    return value


def _comma_list(text: str, item: Callable[[str], T], what: str) -> list[T]:
    """Comma-separated values each passing `item`; one message for the whole list."""
    try:
        values = [item(x) for x in text.split(",") if x.strip()]
    except argparse.ArgumentTypeError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"must be comma-separated {what}, got {text!r}")
    return values


def positive_int_list(text: str) -> list[int]:
    """Comma-separated integers >= 1 (cut-offs K: `10,50,100`)."""
    return _comma_list(text, positive_int, "integers >= 1")


def number_list(text: str) -> list[float]:
    """Comma-separated numbers, `inf` / `-inf` allowed, NaN not."""
    return _comma_list(text, number, "numbers (inf / -inf allowed)")
