"""The published numbers this project sets its runs beside, read from ``results/baselines/`` (its README
gives where each comes from):

* the baselines' success after 1M offline updates, per task, domain and overall, 12 seeds each
  (``ogbench_offline_1M_baselines.csv``, the released data of "Q-learning with adjoint matching", which
  the RQL paper uses for every baseline it does not run itself): ``load_baselines``, ``load_baseline_seeds``;
* the same runs' learning curves, every 50,000 updates (``qam_offline_curves.csv``): ``load_curves`` and
  ``published_at``, which gives a run stopped early the published value at the same number of updates;
* the RQL paper's Table 1 per category (``rql_paper_table1_categories.csv``): ``load_paper_table``.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import Sequence

from rql_lite.configs import BENCHMARK_DOMAINS
from rql_lite.runs.records import default_results_dir

# The baselines in the order of the paper's table.
PAPER_BASELINE_ORDER = ("ReBRAC", "FBRAC", "BAM", "FQL", "FAWAC", "CGQL", "CGQL-M", "CGQL-L", "DAC", "QSM", "DSRL",
                        "FEdit", "IFQL", "QAM", "QAM-F", "QAM-E")

# --------------------------------------------------------------------------- the baselines at 1M updates


def default_baselines_path() -> str:
    return os.path.join(default_results_dir(), "baselines", "ogbench_offline_1M_baselines.csv")


def load_baselines(path: str | None = None) -> tuple[list[str], dict[tuple[str, str], float]]:
    """``(methods, success)``: the baseline names in file order and ``success[(task, method)]``,
    the mean over seeds for a task, a domain (its five tasks) or ``"all"``."""
    path = default_baselines_path() if path is None else path
    methods, success = [], {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["method"] not in methods:
                methods.append(row["method"])
            success[(row["task"], row["method"])] = float(row["mean_success"])
    order = {m: i for i, m in enumerate(PAPER_BASELINE_ORDER)}
    return sorted(methods, key=lambda m: (order.get(m, len(order)), m)), success


def load_baseline_seeds(path: str | None = None) -> dict[tuple[str, str], tuple[float, ...]]:
    """``seeds[(task, method)]``: the per-seed success rates behind each published mean (12 seeds)."""
    path = default_baselines_path() if path is None else path
    seeds = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            values = [row[k] for k in row if k.startswith("seed") and row[k] not in ("", None)]
            seeds[(row["task"], row["method"])] = tuple(float(v) for v in values)
    return seeds


# --------------------------------------------------------------------------- the paper's Table 1

PAPER_OWN_METHODS = ("RQL", "TFQL", "BDPO")  # run by the RQL paper itself (4 seeds); the rest are inherited
FAMILY_BASELINES = ("FQL", "IFQL", "FAWAC", "FBRAC")  # the four families rql_lite implements beside RQL and TFQL


def default_paper_table_path() -> str:
    return os.path.join(default_results_dir(), "baselines", "rql_paper_table1_categories.csv")


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """The RQL paper's Table 1 per category: success in percent, the mean of a category's five tasks
    (``"all"``: of the 50), for its 19 methods. ``categories`` are the paper's names, which carry the
    variant (``scene-play-sparse``, ``cube-quadruple-play-100M``); ``domains`` the matching
    ``configs.BENCHMARK_DOMAINS`` keys (and ``"all"``). Source: ``results/baselines/README.md``."""

    methods: tuple[str, ...]
    categories: tuple[str, ...]
    domains: tuple[str, ...]
    percent: dict

    def category(self, domain: str) -> str:
        return self.categories[self.domains.index(domain)]

    def value(self, domain: str, method: str) -> float:
        """Percent for a domain (a ``BENCHMARK_DOMAINS`` key, or ``"all"``) and a method."""
        return self.percent[(self.category(domain), method)]

    def leaders(self, domain: str, exclude: Sequence[str] = ()) -> tuple[str, float]:
        """The best value on a domain and every method that reaches it, leaving out ``exclude``:
        ``("CGQL, CGQL-M, CGQL-L and DAC", 8.0)`` where four tie (in the table's order)."""
        _, value = self.best(domain, exclude)
        names = [m for m in self.methods if m not in exclude and self.value(domain, m) == value]
        return (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]), value

    def best(self, domain: str, exclude: Sequence[str] = ()) -> tuple[str, float]:
        """The best method on a domain (first in the table's order on a tie), leaving out ``exclude``."""
        candidates = [m for m in self.methods if m not in exclude]
        best = max(candidates, key=lambda m: (self.value(domain, m), -candidates.index(m)))
        return best, self.value(domain, best)


def load_paper_table(path: str | None = None) -> PaperTable:
    """Read ``results/baselines/rql_paper_table1_categories.csv`` (see its README for provenance)."""
    path = default_paper_table_path() if path is None else path
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    methods = tuple(k for k in rows[0] if k != "category")
    categories = tuple(r["category"] for r in rows)
    domains = []
    for c in categories:
        found = [d for d in BENCHMARK_DOMAINS if c == d or c.startswith(d + "-")] or (["all"] if c == "all" else [])
        if len(found) != 1:
            raise ValueError(f"{path}: the category {c!r} matches no single benchmark domain")
        domains.append(found[0])
    percent = {(r["category"], m): float(r[m]) for r in rows for m in methods}
    return PaperTable(methods, categories, tuple(domains), percent)


def paper_table_disagreements(paper: PaperTable | None = None, baselines=None,
                              tolerance: float = 1.0) -> list[tuple[str, str, float, float]]:
    """Inherited cells of the paper's table that differ from the released QAM data by more than
    ``tolerance`` points: ``(category, method, paper's percent, QAM data's percent)``."""
    paper = load_paper_table() if paper is None else paper
    methods, success = load_baselines() if baselines is None else baselines
    out = []
    for category, domain in zip(paper.categories, paper.domains):
        for m in methods:
            if m in paper.methods and (domain, m) in success:
                ours, theirs = paper.percent[(category, m)], 100 * success[(domain, m)]
                if abs(ours - theirs) > tolerance:
                    out.append((category, m, ours, round(theirs, 1)))
    return out


# --------------------------------------------------------------------------- the baselines' learning curves

CURVE_INTERVAL = 50_000  # the released curves hold one evaluation every this many updates


def default_curves_path() -> str:
    return os.path.join(default_results_dir(), "baselines", "qam_offline_curves.csv")


def load_curves(path: str | None = None) -> dict[tuple[str, str], dict[int, tuple[float, ...]]]:
    """``curves[(task, method)][step]``: the 12 seeds' success rates at ``step`` (50,000, 100,000, ...,
    1,000,000) for a task, a domain (mean of its five tasks) or ``"all"``."""
    path = default_curves_path() if path is None else path
    curves: dict = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            seeds = tuple(float(row[k]) for k in row if k.startswith("seed") and row[k] not in ("", None))
            curves.setdefault((row["task"], row["method"]), {})[int(row["step"])] = seeds
    return curves


@dataclasses.dataclass(frozen=True)
class PublishedPoint:
    """A published method's success at one step of its curve: ``step`` (the first released step at or after
    the step asked for), the mean and the per-seed values."""

    method: str
    task: str
    step: int
    mean: float
    seeds: tuple[float, ...]

    @property
    def range(self) -> tuple[float, float]:
        return min(self.seeds), max(self.seeds)


def published_at(task: str, method: str, step: int, curves: dict | None = None) -> PublishedPoint | None:
    """Where the published runs of ``method`` on ``task`` stood after ``step`` updates: the first released
    evaluation at or after ``step`` (a run of ours stopped at 40,000 meets the published value at 50,000;
    the curves are released every 50,000 only, and the caller says which step it shows). ``None`` when the
    method has no released curve on the task or ``step`` lies past its end."""
    curves = load_curves() if curves is None else curves
    curve = curves.get((task, method))
    if not curve:
        return None
    later = [s for s in curve if s >= step]
    if not later:
        return None
    at = min(later)
    seeds = curve[at]
    return PublishedPoint(method, task, at, sum(seeds) / len(seeds), seeds)
