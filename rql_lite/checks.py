"""Argument checks shared by every layer: the one integer and number validator, and text parsers.

Each check raises ``ValueError`` with a message that names the argument, what it accepts and what
it got ("--steps must be an integer >= 1, got 0"), so the command line prints it as it is. The
name is whatever the caller's user typed: a function argument (``num_episodes``), a config field
(``flow_steps``) or a flag (``--steps``). Pure Python (and NumPy's integer and float types).
"""
from __future__ import annotations

import argparse
import math

import numpy as np


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python's or NumPy's), and not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _subject(name: str | None, hint: str) -> str:
    """The start of a message: ``"name (hint)"``; an argparse argument's message has no name (argparse
    puts ``argument --steps:`` before it), so it starts with ``must be``."""
    words = f"{name} ({hint})" if name and hint else name or ""
    return words + " " if words else ""


def _int_bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" between {minimum} and {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""


def check_int(value, name: str | None, minimum: int | None = None, maximum: int | None = None, *,
              allow_none: bool = False, none_means: str = "", hint: str = "") -> int | None:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]`` (either bound optional);
    ``None`` passes when ``allow_none`` (``none_means`` says what it stands for in the message).
    Otherwise a ``ValueError``: ``check_int(0, "--steps", 1)`` says ``--steps must be an integer >= 1,
    got 0``; ``hint`` adds what the name means, e.g. ``flow_steps (K, the number of Euler steps)``.
    """
    if value is None and allow_none:
        return None
    if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        none = f"None ({none_means}) or " if allow_none and none_means else "None or " if allow_none else ""
        raise ValueError(f"{_subject(name, hint)}must be {none}an integer{_int_bounds(minimum, maximum)}, "
                         f"got {value!r}")
    return int(value)


def check_number(value, name: str | None, minimum: float | None = None, maximum: float | None = None, *,
                 above: float | None = None, below: float | None = None, hint: str = "", note: str = "") -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) with ``minimum <= value <=
    maximum`` and ``above < value < below`` (each bound optional). ``note`` is added to the message,
    e.g. what typical values mean."""
    finite = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
              and math.isfinite(value))
    ok = finite and (minimum is None or value >= minimum) and (maximum is None or value <= maximum) and \
        (above is None or value > above) and (below is None or value < below)
    if ok:
        return float(value)
    if minimum is not None and maximum is not None:
        bounds = f" in [{minimum:g}, {maximum:g}]"
    elif above is not None and below is not None:
        bounds = f" strictly between {above:g} and {below:g}"
    else:
        parts = [f">= {minimum:g}" if minimum is not None else "", f"<= {maximum:g}" if maximum is not None else "",
                 f"> {above:g}" if above is not None else "", f"< {below:g}" if below is not None else ""]
        bounds = "".join(f" {p}" for p in parts if p)
    raise ValueError(f"{_subject(name, hint)}must be a finite number{bounds}, got {value!r}"
                     + (f"; {note}" if note else ""))


def parse_int(text: str, name: str | None = None) -> int:
    """An integer written in ``text`` (a command-line word), or a ``ValueError`` saying what was expected."""
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name + ': ' if name else ''}expected an integer, got {text!r}") from None


def parse_number(text: str, name: str | None = None) -> float:
    """A number written in ``text``; ``inf`` and ``nan`` parse (``check_number`` refuses them)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name + ': ' if name else ''}expected a number, got {text!r}") from None


def int_argument(minimum: int | None = None, maximum: int | None = None):
    """An argparse ``type`` for an integer in ``[minimum, maximum]``: a bad word is a usage error with
    ``check_int``'s message (``argument --steps: must be an integer >= 1, got 0``)."""
    def parse(text: str) -> int:
        try:
            return check_int(parse_int(text), None, minimum, maximum)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = f"integer{_int_bounds(minimum, maximum)}"
    return parse


def number_argument(above: float | None = None):
    """An argparse ``type`` for a finite number ``> above`` (any finite number if ``above`` is None)."""
    def parse(text: str) -> float:
        try:
            return check_number(parse_number(text), None, above=above)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = "number" if above is None else f"number > {above:g}"
    return parse
