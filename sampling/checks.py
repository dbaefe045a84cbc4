"""Checks of user-given settings at the boundary where config becomes objects: one error line, exit 2.

Entry points (sample.py, train.py, the scripts) validate each number once here, before anything is
built or written; library code below them may then assume sane values.
"""

from __future__ import annotations

import math


class InputError(Exception):
    """Bad user input; the message is one line naming the setting and what it allows."""


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    lo_s = "-inf" if lo is None else str(lo) if isinstance(lo, int) else f"{lo:g}"
    hi_s = "inf" if hi is None else str(hi) if isinstance(hi, int) else f"{hi:g}"
    return f"{left}{lo_s}, {hi_s}{right}"


def check_number(
    name: str,
    value,
    lo: float | None = None,
    hi: float | None = None,
    *,
    integer: bool = False,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_none: bool = False,
) -> int | float | None:
    """``value`` if it is a finite number (an int when ``integer``) within the bounds, else InputError.

    Bounds are inclusive unless ``lo_open`` / ``hi_open``; None means unbounded on that side. NaN and
    infinities are always refused: they would run and give black or saturated images.
    """
    if value is None and allow_none:
        return None
    kind = "an integer" if integer else "a finite number"
    what = f"{name} must be {kind} in {_interval(lo, hi, lo_open, hi_open)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what}, got {value!r}")
    if integer and not isinstance(value, int):
        raise InputError(f"{what}, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{what}, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise InputError(f"{what}, got {value!r}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise InputError(f"{what}, got {value!r}")
    return value


def check_choice(name: str, value, choices: tuple) -> object:
    """``value`` if it is one of ``choices``, else InputError listing them."""
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value
