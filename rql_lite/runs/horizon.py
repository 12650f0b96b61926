"""The horizon study, read from its records: does RQL's lead over TFQL grow with the horizon?

Two ways to grow the horizon with everything else fixed, each a set of run records:

* **the K-sweep** on one task: TFQL bootstraps through the K + 1 steps of the expanded MDP per environment
  step, RQL through one, so the number of flow steps K grows TFQL's horizon alone (same data, same task).
  Its records are the runs of ``results/horizon/scene-ksweep/`` beside the reproduction's own runs of the
  task at the default K (``results/ogbench-cpu/scene-task1/``);
* **the point mazes**: the same point mass in mazes (or towards goals) that lie further away.

``sweep_points`` groups records into one point per (method, setting): the seeds' success at the last step
every run of the group evaluated, their mean and Student-t interval. Nothing here trains.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from typing import Callable, Iterable, Sequence

import numpy as np

from rql_lite.runs.records import Record, default_results_dir, find_records, study_dir
from rql_lite.runs.report import _method_rank, common_step, confidence_interval, html_table

KSWEEP_TASK = "scene-play-singletask-task1-v0"
KSWEEP_DIRS = (os.path.join("ogbench-cpu", "scene-task1"), os.path.join("horizon", "scene-ksweep"))
KSWEEP_METHODS = ("RQL", "TFQL")


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One (method, setting) of a sweep: its seeds' success at ``step`` updates."""

    method: str
    setting: float
    step: int
    seeds: tuple[int, ...]
    success_rates: tuple[float, ...]
    eval_episodes: int
    records: tuple[str, ...]
    datasets: tuple[str, ...] = ()  # distinct dataset hashes of its seeds: more than one where data were regenerated

    @property
    def mean(self) -> float:
        return float(np.mean(self.success_rates))

    @property
    def ci(self) -> tuple[float, float]:
        return confidence_interval(self.success_rates)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


def _shared_config(records: Sequence[Record], ignore: Sequence[str]) -> dict:
    """The config every record shares, leaving out ``ignore`` and the agent's own fields; ``ValueError`` if the
    records differ elsewhere (a sweep compares settings with everything else fixed)."""
    own = {"agent", *ignore}
    configs = {json.dumps({k: v for k, v in r.config.items() if k not in own}, sort_keys=True) for r in records}
    if len(configs) > 1:
        raise ValueError(f"the sweep's records differ in more than {list(ignore)}: {len(configs)} configs")
    return json.loads(configs.pop()) if configs else {}


def sweep_points(records: Iterable[Record], setting: Callable[[Record], float], step: int | None = None) -> list[SweepPoint]:
    """One ``SweepPoint`` per (method, ``setting(record)``), every seed read at ``step`` (default: the last
    step all the records evaluated, so that runs planned for different lengths are compared at one). A
    record without an evaluation at that step is left out; a seed recorded twice counts once."""
    records = [r for r in records if r.success_curve]
    step = common_step(records) if step is None else step
    groups: dict[tuple, dict[int, Record]] = defaultdict(dict)
    for r in records:
        if dict(r.success_curve).get(step) is not None:
            groups[(r.method, setting(r))].setdefault(r.seed, r)
    points = []
    for (method, value), by_seed in groups.items():
        recs = [by_seed[s] for s in sorted(by_seed)]
        points.append(SweepPoint(method, value, step, tuple(r.seed for r in recs),
                                 tuple(dict(r.success_curve)[step] for r in recs),
                                 min(r.eval_episodes for r in recs), tuple(r.path for r in recs),
                                 tuple(dict.fromkeys(r.dataset_sha256 for r in recs if r.dataset_sha256))))
    return sorted(points, key=lambda p: (_method_rank(p.method), p.setting))


def ksweep_records(root: str | None = None) -> list[Record]:
    """RQL and TFQL on the K-sweep's task at one size: the reproduction's runs (K = 10) and the sweep's
    (other K). ``ValueError`` if their configs differ in more than K."""
    root = default_results_dir() if root is None else root
    found = []
    for folder in KSWEEP_DIRS:
        path = os.path.join(root, folder)
        if os.path.isdir(path):
            found += [r for r in find_records(path, exclude=()) if r.task == KSWEEP_TASK and r.method in KSWEEP_METHODS]
    _shared_config(found, ignore=("flow_steps",))
    return found


def ksweep_points(records: Sequence[Record] | None = None) -> list[SweepPoint]:
    """``sweep_points`` of the K-sweep, the setting being K (``flow_steps``)."""
    records = ksweep_records() if records is None else records
    return sweep_points(records, lambda r: r.config["flow_steps"])


def by_method(points: Iterable[SweepPoint]) -> dict[str, list[SweepPoint]]:
    """The points of each method, in the order of their setting."""
    out: dict[str, list[SweepPoint]] = defaultdict(list)
    for p in points:
        out[p.method].append(p)
    return {m: sorted(v, key=lambda p: p.setting) for m, v in out.items()}


def study_records(name: str, root: str | None = None) -> list[Record]:
    """Every record under ``results/horizon/{name}`` (``[]`` if nothing has been run there)."""
    path = os.path.join(study_dir() if root is None else root, name)
    return find_records(path, exclude=()) if os.path.isdir(path) else []


# --------------------------------------------------------------------------- readings for the text


def _pct(values: Iterable[float]) -> str:
    return ", ".join(f"{100 * v:.0f}" for v in values)


def separated(a: SweepPoint, b: SweepPoint) -> bool:
    """Every seed of ``a`` above every seed of ``b`` (the claim a handful of seeds can make without an interval)."""
    return min(a.success_rates) > max(b.success_rates)


def gap_reading(points: Sequence[SweepPoint], ahead: str = "RQL", behind: str = "TFQL",
                setting_name: str = "K") -> dict:
    """What the sweep says about the gap between two methods across the setting, as sentences and flags:
    ``per_setting`` (one sentence per setting run for both), ``settings`` (those settings), ``gaps`` (mean of
    ``ahead`` minus mean of ``behind``, success as a fraction), ``separated`` (settings where every seed of
    ``ahead`` beats every seed of ``behind``), ``grows`` (whether the gap grows with the setting: ``None``
    with fewer than two settings), ``ahead_range`` (the spread of ``ahead``'s means across the settings)."""
    methods = by_method(points)
    first = {p.setting: p for p in methods.get(ahead, [])}
    second = {p.setting: p for p in methods.get(behind, [])}
    settings = sorted(set(first) & set(second))
    sentences, gaps, apart = [], [], []
    for s in settings:
        a, b = first[s], second[s]
        gaps.append(a.mean - b.mean)
        if separated(a, b):
            apart.append(s)
        sentences.append(f"{setting_name} = {s:g}: {ahead} {100 * a.mean:.0f} (seeds {_pct(a.success_rates)}), "
                         f"{behind} {100 * b.mean:.0f} (seeds {_pct(b.success_rates)})"
                         + (f", every {ahead} seed above every {behind} seed" if separated(a, b) else
                            f", every {behind} seed above every {ahead} seed" if separated(b, a) else ""))
    grows = None if len(settings) < 2 else bool(all(later >= earlier for earlier, later in zip(gaps, gaps[1:])))
    means = [first[s].mean for s in sorted(first)]
    return {"per_setting": sentences, "settings": settings, "gaps": gaps, "separated": apart, "grows": grows,
            "ahead_range": (min(means), max(means)) if means else None}


# --------------------------------------------------------------------------- runs as a table (pilots, costs)


@dataclasses.dataclass(frozen=True)
class RunRow:
    """One run directory of a study: its setting, where each (task, seed) stands, and what it cost."""

    folder: str
    method: str
    config: dict
    steps: int
    target_steps: int
    eval_episodes: int
    success: dict  # task -> (success rates of its seeds at ``steps``)
    wall_time_s: float
    agents: int
    peak: dict = dataclasses.field(default_factory=dict)  # task -> (best mean over seeds on the curve, its step)

    @property
    def seconds_per_agent_update(self) -> float:
        """Wall time (training and evaluations) per update of one agent: the run's cost per update."""
        return self.wall_time_s / max(1, self.steps * self.agents)


def run_rows(records: Iterable[Record]) -> list[RunRow]:
    """One ``RunRow`` per run directory among ``records`` (a record sits in ``DIR/records/...``), each read at
    the last step all its records evaluated."""
    by_dir: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_dir[r.path.split(os.sep + "records" + os.sep)[0]].append(r)
    rows = []
    for folder, recs in sorted(by_dir.items()):
        step = common_step(recs) or 0
        success: dict[str, list[float]] = defaultdict(list)
        curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in sorted(recs, key=lambda r: (r.task, r.seed)):
            success[r.task].append(dict(r.success_curve).get(step, float("nan")))
            for s, v in r.success_curve:
                curves[r.task][s].append(v)
        peak = {}
        for task, by_step in curves.items():
            best = max(sorted(by_step), key=lambda s: float(np.mean(by_step[s])))
            peak[task] = (float(np.mean(by_step[best])), best)
        rows.append(RunRow(os.path.basename(folder), recs[0].method, recs[0].config, step,
                           max(r.target_steps or r.steps for r in recs), min(r.eval_episodes for r in recs),
                           {t: tuple(v) for t, v in success.items()}, max(r.wall_time_s for r in recs), len(recs),
                           peak))
    return rows


def run_rows_html(rows: Sequence[RunRow], short: Callable[[str], str] = lambda task: task) -> str:
    """A table of ``run_rows``: the run, its method and setting (h, alpha, K, networks, value heads), updates
    reached of planned, success per task (percent, per seed, with the episodes per point), the best mean on the way
    and the wall time per update of one agent, evaluations included."""
    head = ("run", "method", "setting", "updates", "success, % per seed (episodes per point)",
            "best mean on the way (updates)", "ms per agent-update")
    body = []
    for row in rows:
        c = row.config
        setting = (f"h = {c['horizon']}, alpha = {c['alpha']:g}, K = {c['flow_steps']}, "
                   f"{len(c['policy_hidden'])} x {c['policy_hidden'][0]}, {c['num_values']} heads")
        success = "; ".join(f"{short(t)}: {_pct(v)}" for t, v in row.success.items()) + f" ({row.eval_episodes})"
        updates = f"{row.steps:,} of {row.target_steps:,}" if row.target_steps > row.steps else f"{row.steps:,}"
        peak = "; ".join(f"{short(t)}: {100 * v:.0f} ({step:,})" for t, (v, step) in row.peak.items())
        body.append((row.folder, row.method, setting, updates, success, peak, f"{1000 * row.seconds_per_agent_update:.0f}"))
    return html_table(head, body, "rql-runs")


def sweep_points_html(points: Sequence[SweepPoint], setting_name: str = "K") -> str:
    """The points of a sweep as a table: method, setting, updates, seeds, success in percent (mean with its
    95% interval, and per seed), evaluation episodes per seed."""
    head = ("method", setting_name, "updates", "seeds", "success, % [95% CI]", "per seed", "episodes per seed")
    body = [(p.method, f"{p.setting:g}", f"{p.step:,}", str(p.n_seeds),
             f"{100 * p.mean:.0f}" + (f" [{100 * p.ci[0]:.0f}, {100 * p.ci[1]:.0f}]" if p.n_seeds > 1 else ""),
             _pct(p.success_rates), str(p.eval_episodes)) for p in points]
    return html_table(head, body, "rql-sweep")
