"""Results tables built only from run records, beside the published baselines.

A *record* is the file ``records/seed{S}.json`` that ``python -m rql_lite train`` writes into its
run directory (``rql_lite.runs.records``: task, agent, seed, steps, the effective config, the
dataset and its sha256, the git commit, the device, the wall time and the success curve; that
module's ``find_records`` and ``default_results_dir`` are imported here for the pages that build
tables). Everything a table shows for this project's agents is computed here from such records,
and each table cell carries the paths of the records behind it, so a test can check that no
number stands without one. A cell with no record says ``not run``.

The published baselines (success after 1M offline steps, 12 seeds each, from the experiment
data of "Q-learning with adjoint matching", which the RQL paper uses) are read from
``results/baselines/ogbench_offline_1M_baselines.csv``.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import html
import json
import math
import os
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from rql_lite.agent import config_dict
from rql_lite.configs import BENCHMARK_DOMAINS, agent_config, benchmark_tasks, domain_of
from rql_lite.runs.records import Record, default_results_dir, find_records  # noqa: F401  (read here, used by pages)

NOT_RUN = "not run"
PAPER_STEPS = 1_000_000
PAPER_SEEDS = 4

# The baselines in the order of the paper's table.
PAPER_BASELINE_ORDER = ("ReBRAC", "FBRAC", "BAM", "FQL", "FAWAC", "CGQL", "CGQL-M", "CGQL-L", "DAC", "QSM", "DSRL",
                        "FEdit", "IFQL", "QAM", "QAM-F", "QAM-E")
# Domains whose paper numbers use the 100M-transition datasets (downloaded separately).
HUNDRED_M_DOMAINS = ("puzzle-4x4-play", "cube-quadruple-play")


def is_paper_scale(record: Record) -> bool:
    """Whether a record used the paper's hyperparameters and network sizes for its task."""
    if record.task not in benchmark_tasks():
        return False
    cfg = record.config
    expected = config_dict(agent_config(record.task, cfg["obs_dim"], cfg["action_dim"], profile="full",
                                        agent=record.agent))
    return cfg == expected


# --------------------------------------------------------------------------- summaries


def confidence_interval(values: Sequence[float], level: float = 0.95,
                        bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    """Student-t interval for the mean over seeds, clipped to ``bounds`` (a success rate lies in
    [0, 1]; with two seeds the t factor is 12.7 and the raw interval leaves that range).
    ``(nan, nan)`` for fewer than two values."""
    values = np.asarray(values, float)
    if values.size < 2:
        return math.nan, math.nan
    from scipy import stats

    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(max(bounds[0], values.mean() - half)), float(min(bounds[1], values.mean() + half))


@dataclasses.dataclass(frozen=True)
class Summary:
    """Finished seeds of one (task, method, steps, config, data source): their mean and interval."""

    task: str
    method: str
    steps: int
    n_seeds: int
    mean: float
    ci: tuple[float, float]
    seeds: tuple[int, ...]
    success_rates: tuple[float, ...]
    eval_episodes: int
    paper_scale: bool
    dataset_source: str
    devices: tuple[str, ...]
    commands: tuple[str, ...]
    records: tuple[str, ...]
    config: dict

    def describe(self) -> str:
        """``"4 seeds, 1M steps, generated data, cpu: ..."``."""
        steps = f"{self.steps // 1000}k" if self.steps < PAPER_STEPS else f"{self.steps / 1e6:g}M"
        return (f"{self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}, {steps} steps, {self.eval_episodes} eval "
                f"episodes, {self.dataset_source} data, {'; '.join(self.devices)}")


def summarize(records: Iterable[Record]) -> list[Summary]:
    """Group finished records by (task, method, steps, config, data source) and summarise each group.

    Unfinished records (a run still going, or stopped) are left out; so is a seed recorded twice
    (the first path wins, and ``ValueError`` if the two disagree).
    """
    groups: dict[tuple, dict[int, Record]] = defaultdict(dict)
    for r in records:
        if not r.finished or r.success_rate is None:
            continue
        key = (r.task, r.method, r.steps, json.dumps(r.config, sort_keys=True), r.dataset_source)
        if r.seed in groups[key]:
            other = groups[key][r.seed]
            if other.success_rate != r.success_rate:
                raise ValueError(f"seed {r.seed} of {r.task} / {r.method} is recorded twice with different results: "
                                 f"{other.path} and {r.path}; remove one")
            continue
        groups[key][r.seed] = r
    out = []
    for (task, method, steps, config_json, source), by_seed in groups.items():
        recs = [by_seed[s] for s in sorted(by_seed)]
        rates = [r.success_rate for r in recs]
        out.append(Summary(
            task=task, method=method, steps=steps, n_seeds=len(recs), mean=float(np.mean(rates)),
            ci=confidence_interval(rates), seeds=tuple(r.seed for r in recs), success_rates=tuple(rates),
            eval_episodes=min(r.eval_episodes for r in recs), paper_scale=is_paper_scale(recs[0]),
            dataset_source=source, devices=tuple(sorted({r.device for r in recs})),
            commands=tuple(dict.fromkeys(r.command for r in recs)), records=tuple(r.path for r in recs),
            config=json.loads(config_json)))
    return sorted(out, key=lambda s: (s.task, s.method, -s.steps, -s.n_seeds))


# --------------------------------------------------------------------------- baselines


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


# --------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Cell:
    """One table cell: the number (``None`` if there is none), its text, and its evidence."""

    value: float | None
    text: str
    detail: str = ""
    records: tuple[str, ...] = ()  # run records behind a number of ours; empty for baselines


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    kind: str  # "task", "domain" or "all"
    cells: dict  # column name -> Cell
    command: str = ""  # for a task row: the command that (re)produces this project's number


@dataclasses.dataclass(frozen=True)
class Table:
    baseline_methods: tuple[str, ...]
    our_methods: tuple[str, ...]
    rows: tuple[Row, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.baseline_methods + self.our_methods

    def our_cells(self):
        """``(row, method, cell)`` for every cell of this project's methods."""
        for row in self.rows:
            for method in self.our_methods:
                yield row, method, row.cells[method]

    def to_html(self, commands: bool = True) -> str:
        """The table as HTML (a reader's table: baselines, then ours), then, if ``commands``, the command
        of each task row in a collapsible block of its own below it (a long command in a table column
        squeezes the column and makes every row tall)."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ("task",) + self.columns)
        body = []
        for row in self.rows:
            style = ' style="font-weight:bold;background:#f3f3f3"' if row.kind != "task" else ""
            tds = [f"<td>{html.escape(row.label)}</td>"]
            for c in self.columns:
                cell = row.cells[c]
                title = f' title="{html.escape(cell.detail)}"' if cell.detail else ""
                text = html.escape(cell.text) if cell.value is not None else f"<i>{html.escape(cell.text)}</i>"
                small = f"<br><small>{html.escape(cell.detail)}</small>" if cell.detail and c in self.our_methods else ""
                tds.append(f"<td{title}>{text}{small}</td>")
            body.append(f"<tr{style}>{''.join(tds)}</tr>")
        out = (f'<div style="overflow-x:auto"><table class="rql-results" style="font-size:80%">'
               f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
        if commands:
            out += commands_html([(row.label, [row.command]) for row in self.rows if row.command],
                                 "Commands for this project's runs, one per task row")
        return out


def commands_html(rows: Sequence[tuple[str, Sequence[str]]], summary: str) -> str:
    """A collapsible block listing ``(label, commands)`` pairs: one line per command, wrapped to the
    page's width, so that a results table keeps narrow columns."""
    items = "".join(
        f'<tr><td style="white-space:nowrap;vertical-align:top">{html.escape(label)}</td><td>'
        + "".join(f'<code style="white-space:pre-wrap;word-break:break-word">{html.escape(c)}</code><br>'
                  for c in cmds) + "</td></tr>"
        for label, cmds in rows)
    return (f'<details class="rql-commands"><summary>{html.escape(summary)} ({len(rows)})</summary>'
            f'<table style="font-size:80%;table-layout:auto;width:100%">{items}</table></details>')


def paper_command(task: str, agent: str, seeds: int = PAPER_SEEDS) -> str:
    """The command that runs the paper's protocol for one task (official data; a GPU)."""
    dataset = "official" if domain_of(task) not in HUNDRED_M_DOMAINS else "PATH/TO/100M-DATASET.npz"
    return (f"python -m rql_lite train --task {task} --agent {agent} --seeds {' '.join(map(str, range(seeds)))} "
            f"--steps {PAPER_STEPS} --dataset {dataset} --profile full --out runs/{task}-{agent}")


def _cell_from_summary(s: Summary) -> Cell:
    low, high = s.ci
    interval = f" [{low:.2f}, {high:.2f}]" if s.n_seeds > 1 else ""
    return Cell(value=s.mean, text=f"{s.mean:.2f}{interval}", detail=s.describe(), records=s.records)


def _best_paper_scale(summaries: list[Summary], task: str, method: str) -> Summary | None:
    """The paper-scale summary of (task, method) with the most steps, then the most seeds."""
    found = [s for s in summaries if s.task == task and s.method == method and s.paper_scale]
    return max(found, key=lambda s: (s.steps, s.n_seeds)) if found else None


def results_table(records: Iterable[Record] | None = None, baselines=None,
                  our_methods: Sequence[str] = ("RQL", "TFQL"), domains: Sequence[str] = BENCHMARK_DOMAINS) -> Table:
    """The paper's table: per task, per domain (mean of its five tasks) and over all tasks.

    Baseline columns come from ``baselines`` (``load_baselines()``'s output; default the file).
    Columns ``our_methods`` come only from paper-scale records (``is_paper_scale``); a task with
    none says ``not run``, and a domain or the whole benchmark gets a number only when every one
    of its tasks has one.
    """
    records = find_records() if records is None else list(records)
    baseline_methods, baseline_success = load_baselines() if baselines is None else baselines
    summaries = summarize(records)
    rows, all_task_cells = [], {m: [] for m in our_methods}

    def baseline_cell(key: str, method: str) -> Cell:
        value = baseline_success.get((key, method))
        return Cell(None, "n/a") if value is None else Cell(value, f"{value:.2f}", "published, 12 seeds")

    for domain in domains:
        task_cells = {m: [] for m in our_methods}
        for task in benchmark_tasks(domain):
            cells = {m: baseline_cell(task, m) for m in baseline_methods}
            for m in our_methods:
                summary = _best_paper_scale(summaries, task, m)
                cells[m] = _cell_from_summary(summary) if summary else Cell(None, NOT_RUN)
                task_cells[m].append(cells[m])
            ours = [cells[m] for m in our_methods if cells[m].value is not None]
            command = (next(iter(_best_paper_scale(summaries, task, our_methods[0]).commands))
                       if ours and cells[our_methods[0]].value is not None
                       else paper_command(task, our_methods[0].lower()))
            rows.append(Row(task.replace("-singletask", "").replace("-v0", ""), "task", cells, command))
        cells = {m: baseline_cell(domain, m) for m in baseline_methods}
        for m in our_methods:
            cells[m] = _aggregate(task_cells[m], 5)
            all_task_cells[m].extend(task_cells[m])
        rows.append(Row(f"{domain} (5 tasks)", "domain", cells))
    cells = {m: baseline_cell("all", m) for m in baseline_methods}
    for m in our_methods:
        cells[m] = _aggregate(all_task_cells[m], 5 * len(domains))
    rows.append(Row(f"all ({5 * len(domains)} tasks)", "all", cells))
    return Table(tuple(baseline_methods), tuple(our_methods), tuple(rows))


def _aggregate(cells: list[Cell], expected: int) -> Cell:
    done = [c for c in cells if c.value is not None]
    if len(done) < expected:
        return Cell(None, f"{NOT_RUN} ({len(done)}/{expected} tasks)")
    value = float(np.mean([c.value for c in done]))
    return Cell(value, f"{value:.2f}", f"mean of {expected} tasks", tuple(p for c in done for p in c.records))


def summaries_html(summaries: Sequence[Summary]) -> str:
    """A table of run summaries (task, method, success with its interval, size, networks), then the
    commands that produced them in a collapsible block."""
    head = "".join(f"<th>{h}</th>" for h in ("task", "method", "success rate [95% CI]", "per seed", "size",
                                              "networks"))
    rows = []
    for s in summaries:
        low, high = s.ci
        ci = f" [{low:.2f}, {high:.2f}]" if s.n_seeds > 1 else ""
        nets = (f"policy {s.config['policy_hidden']}, value {s.config['value_hidden']} x{s.config['num_values']}, "
                f"batch {s.config['batch_size']}, alpha {s.config['alpha']:g}")
        cells = (s.task.replace("-singletask", "").replace("-v0", ""), s.method, f"{s.mean:.2f}{ci}",
                 ", ".join(f"{v:.2f}" for v in s.success_rates), s.describe(), nets)
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f"<tr>{tds}</tr>")
    labels = [(f"{s.task.replace('-singletask', '').replace('-v0', '')}, {s.method}", s.commands) for s in summaries]
    return (f'<div style="overflow-x:auto"><table class="rql-runs" style="font-size:80%"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
            + commands_html(labels, "Commands that produced these runs"))


def domain_means(table: Table) -> dict[str, dict[str, float | None]]:
    """``{domain row label: {method: value or None}}`` for plotting."""
    return {row.label: {m: row.cells[m].value for m in table.columns} for row in table.rows if row.kind != "task"}


# --------------------------------------------------------------------------- benchmark records


def find_bench_records(root: str | None = None) -> list[dict]:
    """Every ``results/bench/bench-*.json`` written by ``python -m rql_lite bench``, oldest first,
    each with its ``path`` added."""
    root = default_results_dir() if root is None else root
    out = []
    for path in sorted(glob.glob(os.path.join(root, "bench", "bench-*.json"))):
        with open(path) as f:
            record = json.load(f)
        record["path"] = path
        out.append(record)
    return sorted(out, key=lambda r: r.get("date", ""))
