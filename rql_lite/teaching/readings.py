"""Sentences about measured numbers, chosen by the numbers.

A chapter that quotes a measurement must not fill a fixed template: "exceeds it by -0.184"
or "-0.0 per flow step" is what a template prints when the measurement goes the other way.
These helpers pick the wording from the sign and the order of the readings, and never print
a negative zero. They are plain Python on floats, tested on readings of both signs and both
orderings (``tests/test_readings.py``).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence


def number(x: float, fmt: str = ".3f") -> str:
    """``format(x, fmt)`` without a negative zero: ``number(-0.0001, ".2f") == "0.00"``."""
    s = format(float(x), fmt)
    if s.startswith("-") and float(s.rstrip("%")) == 0.0:
        s = s[1:]
    return s


def magnitude(x: float, fmt: str = ".3f") -> str:
    """``|x|`` formatted (no sign at all)."""
    return number(abs(float(x)), fmt)


def is_zero(x: float, fmt: str = ".3f") -> bool:
    """Whether ``x`` reads as zero at the precision ``fmt`` prints."""
    return float(number(abs(float(x)), fmt).rstrip("%")) == 0.0


def linear_label(intercept: float, slope: float, var: str = "K", fmt_a: str = ".0f", fmt_b: str = ".1f") -> str:
    """A fitted line ``a + b var`` written with the right sign: ``"16 - 2.0 K"``, never ``"16 + -2.0 K"``."""
    sign = "-" if slope < 0 and not is_zero(slope, fmt_b) else "+"
    return f"{number(intercept, fmt_a)} {sign} {magnitude(slope, fmt_b)} {var}"


def compare(a: float, b: float, name_a: str, name_b: str, fmt: str = ".3f", unit: str = "") -> str:
    """``name_a`` against ``name_b``: "A exceeds B by 0.18", "A is below B by 0.18" or "A equals B
    to the precision shown"; the difference is always printed as a magnitude."""
    d = float(a) - float(b)
    if is_zero(d, fmt):
        return f"{name_a} equals {name_b} to the precision shown"
    verb = "exceeds" if d > 0 else "is below"
    return f"{name_a} {verb} {name_b} by {magnitude(d, fmt)}{unit}"


def change(delta: float, what: str, fmt: str = ".1f", per: str = "", tol: float = 0.0) -> str:
    """How ``what`` moved: "grows by 2.0 per flow step", "falls by 2.0 ...", or "does not change"
    when ``|delta| <= tol`` or it reads as zero at ``fmt``."""
    per = f" {per}" if per else ""
    if abs(float(delta)) <= tol or is_zero(delta, fmt):
        return f"{what} does not change measurably{per}"
    verb = "grows" if delta > 0 else "falls"
    return f"{what} {verb} by {magnitude(delta, fmt)}{per}"


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two closed intervals ``(low, high)`` share a point."""
    return max(a[0], b[0]) <= min(a[1], b[1])


def can_separate(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two intervals ``(low, high)`` are apart *and* both have width: an interval of zero width
    comes from seeds that happened to agree (two seeds that both scored 1 of 30), not from a measured
    spread, so it separates nothing."""
    return a[1] > a[0] and b[1] > b[0] and not intervals_overlap(a, b)


def ranking(means: Mapping[str, float], intervals: Mapping[str, Sequence[float]] | None = None,
            fmt: str = ".2f", higher: str = "higher", seeds: Mapping[str, Sequence[float]] | None = None) -> str:
    """The methods from best to worst with their means, and, for each neighbouring pair that both have an
    interval in ``intervals``, whether the intervals separate them (``can_separate``): "RQL (0.91) > TFQL
    (0.62), intervals apart; TFQL (0.62) ~ BC flow (0.60), intervals overlap". ``seeds``: per-seed values
    shown after each mean ("RQL (87; seeds 97, 77)"), formatted like the means. NaN means are listed last
    as "not measured"."""
    names = [n for n in means if not math.isnan(float(means[n]))]
    missing = [n for n in means if n not in names]
    names.sort(key=lambda n: float(means[n]), reverse=True)

    def label(name):
        per_seed = "" if not seeds or name not in seeds else "; seeds " + ", ".join(number(v, fmt) for v in seeds[name])
        return f"{name} ({number(means[name], fmt)}{per_seed})"

    judged = {(hi, lo): can_separate(intervals[hi], intervals[lo]) for hi, lo in zip(names, names[1:])
              if intervals is not None and hi in intervals and lo in intervals}
    if seeds:  # one chain, each method once; then which neighbours' intervals were judged
        chain = label(names[0]) if names else ""
        for hi, lo in zip(names, names[1:]):
            chain += (" = " if is_zero(float(means[hi]) - float(means[lo]), fmt) else " > ") + label(lo)
        notes = [f"{hi} and {lo} {'apart' if apart else 'overlap'}" for (hi, lo), apart in judged.items()]
        text = (chain + ("; intervals: " + ", ".join(notes) if notes else "")) if names else "nothing measured"
    else:
        parts = []
        for hi, lo in zip(names, names[1:]):
            rel = "=" if is_zero(float(means[hi]) - float(means[lo]), fmt) else ">"
            note = "" if (hi, lo) not in judged else (", intervals apart" if judged[(hi, lo)] else ", intervals overlap")
            parts.append(f"{label(hi)} {rel} {label(lo)}{note}")
        if len(names) == 1:
            parts.append(label(names[0]))
        text = "; ".join(parts) if parts else "nothing measured"
    if missing:
        text += "; not measured: " + ", ".join(missing)
    return text


def separated_order(means: Mapping[str, float], intervals: Mapping[str, Sequence[float]]) -> list[str]:
    """The best-to-worst order, if every neighbouring pair's intervals are apart; else ``[]``.

    A chapter states an ordering as a finding only when this is non-empty.
    """
    names = sorted(means, key=lambda n: float(means[n]), reverse=True)
    ok = all(can_separate(intervals[a], intervals[b]) for a, b in zip(names, names[1:]))
    return names if ok else []
