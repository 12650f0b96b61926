"""Results tables built only from run records, beside the published baselines.

A *record* is the file ``records/seed{S}.json`` that ``python -m rql_lite train`` writes into its
run directory (``rql_lite.runs.records``: task, agent, seed, steps, the effective config, the
dataset and its sha256, the git commit, the device, the wall time and the success curve; that
module's ``find_records`` and ``default_results_dir`` are imported here for the pages that build
tables). Everything a table shows for this project's agents is computed here from such records,
and each table cell carries the paths of the records behind it, so a test can check that no
number stands without one. A cell with no record says ``not run``.

The published numbers (the baselines after 1M offline steps and every 50,000 before, the paper's Table 1)
are read by ``rql_lite.runs.published`` and re-exported here.
"""
from __future__ import annotations

import dataclasses
import glob
import html
import json
import math
import os
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from rql_lite.agent import METHOD_NAMES, config_dict
from rql_lite.configs import BASELINE_KNOBS, BENCHMARK_DOMAINS, agent_config, benchmark_tasks, domain_of
from rql_lite.runs.published import (  # noqa: F401  (the published numbers, read here and by the pages)
    FAMILY_BASELINES, PAPER_BASELINE_ORDER, PAPER_OWN_METHODS, PaperTable, PublishedPoint, default_baselines_path,
    default_curves_path, default_paper_table_path, load_baseline_seeds, load_baselines, load_curves,
    load_paper_table, paper_table_disagreements, published_at)
from rql_lite.runs.records import Record, default_results_dir, find_records  # noqa: F401  (read here, used by pages)

NOT_RUN = "not run"
PAPER_STEPS = 1_000_000
PAPER_SEEDS = 4

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
    datasets: tuple[str, ...] = ()  # the distinct dataset hashes of its seeds (more than one: regenerated data)

    def describe(self) -> str:
        """``"4 seeds, 1M steps, generated data, cpu: ..."``; where the seeds trained on more than one generation
        of the data (byte-different files from the same recipe), how many and their hashes' first digits."""
        steps = f"{self.steps // 1000}k" if self.steps < PAPER_STEPS else f"{self.steps / 1e6:g}M"
        data = f"{self.dataset_source} data"
        if len(self.datasets) > 1:
            data += (f" ({len(self.datasets)} generations of it, hashes "
                     + ", ".join(h[:8] for h in self.datasets) + ")")
        return (f"{self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}, {steps} steps, {self.eval_episodes} eval "
                f"episodes, {data}, {'; '.join(self.devices)}")


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
            config=json.loads(config_json), datasets=tuple(dict.fromkeys(r.dataset_sha256 for r in recs
                                                                           if r.dataset_sha256))))
    return sorted(out, key=lambda s: (s.task, s.method, -s.steps, -s.n_seeds))


def common_step(records: Iterable[Record]) -> int | None:
    """The largest step at which every given record has an evaluation (its curve), or ``None``."""
    steps = None
    for r in records:
        evaluated = {step for step, _ in r.success_curve}
        steps = evaluated if steps is None else steps & evaluated
    return max(steps) if steps else None


def matched_step(records: Iterable[Record]) -> int | None:
    """The step to compare ``records`` (one task's runs) at: ``common_step`` when they stand at different
    steps (one stopped early, or one extended further), ``None`` when all finished at the same step."""
    records = list(records)
    if all(r.finished for r in records) and len({r.steps for r in records}) <= 1:
        return None
    return common_step(records)


def summarize_at_step(records: Iterable[Record], step: int) -> list[Summary]:
    """``summarize`` of every record as it stood at ``step``: its evaluation at that step (from its
    curve), finished or not. Sound for runs that differ only in their planned length: the key of update
    ``i`` depends on ``i`` alone (``train``), so a run planned for 40,000 updates is, at 20,000, the run
    planned for 20,000. A record without an evaluation at ``step`` is left out."""
    at = []
    for r in records:
        rate = dict(r.success_curve).get(step)
        if rate is not None:
            at.append(dataclasses.replace(r, steps=step, target_steps=step, success_rate=rate, finished=True))
    return summarize(at)


# --------------------------------------------------------------------------- tables


@dataclasses.dataclass(frozen=True)
class Cell:
    """One table cell: the number (``None`` if there is none), its text, and its evidence.

    ``text`` is the number as shown, ``interval`` (optional) its 95% interval as shown on a second,
    smaller line, ``detail`` the size of what is behind it (a tooltip, and for cells of ours a third
    line), ``records`` the run records behind a number of ours (empty for quoted numbers)."""

    value: float | None
    text: str
    detail: str = ""
    records: tuple[str, ...] = ()
    interval: str = ""


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    kind: str  # "task", "domain" or "all"
    cells: dict  # column name -> Cell
    command: str = ""  # for a task row: the commands that (re)produce this project's numbers, one a line


@dataclasses.dataclass(frozen=True)
class Table:
    """A results table. ``our_methods`` (numbers from records) come first, then each group of quoted
    columns: ``groups`` is ``((group title, (column, ...)), ...)``; a column's key is
    ``"{group title}/{column}"`` unless the group is the published baselines (``QAM``, key = method)."""

    our_methods: tuple[str, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    rows: tuple[Row, ...]
    ours_title: str = "this project"
    unit: str = "success rate, %"

    @property
    def baseline_methods(self) -> tuple[str, ...]:
        return tuple(c for _, cols in self.groups for c in cols)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.our_methods + self.baseline_methods

    def our_cells(self):
        """``(row, method, cell)`` for every cell of this project's methods."""
        for row in self.rows:
            for method in self.our_methods:
                yield row, method, row.cells[method]

    def to_html(self, commands: bool = True) -> str:
        """The table as HTML: ours first, then the quoted groups, under a two-level header; numbers right
        aligned and padded, an interval on a second line, the size of a number of ours on a third. Then,
        if ``commands``, each task row's commands in a collapsible block (a long command in a table
        column would squeeze the column and make every row tall)."""
        pad = "padding:2px 6px;text-align:right;vertical-align:top"
        top = [f'<th rowspan="2" style="padding:2px 6px;text-align:left">{html.escape(self.unit)}</th>']
        if self.our_methods:
            top.append(f'<th colspan="{len(self.our_methods)}" style="padding:2px 6px;text-align:center;'
                       f'border-bottom:1px solid #999">{html.escape(self.ours_title)}</th>')
        top += [f'<th colspan="{len(cols)}" style="padding:2px 6px;text-align:center;border-left:2px solid #ccc;'
                f'border-bottom:1px solid #999">{html.escape(title)}</th>' for title, cols in self.groups]
        names = [f'<th style="{pad}">{html.escape(m)}</th>' for m in self.our_methods]
        for _, cols in self.groups:
            names += [f'<th style="{pad}{";border-left:2px solid #ccc" if i == 0 else ""}">{html.escape(c)}</th>'
                      for i, c in enumerate(cols)]
        body = []
        for row in self.rows:
            style = ' style="font-weight:bold;background:#f3f3f3"' if row.kind != "task" else ""
            tds = [f'<td style="padding:2px 6px;text-align:left;vertical-align:top">{html.escape(row.label)}</td>']
            first_of_group = {cols[0] for _, cols in self.groups}
            for c in self.our_methods + tuple(self._keys()):
                cell = row.cells[c]
                border = ";border-left:2px solid #ccc" if c in first_of_group or c in self._first_keys() else ""
                title = f' title="{html.escape(cell.detail)}"' if cell.detail else ""
                text = (html.escape(cell.text) if cell.value is not None
                        else f'<i style="color:#888;font-weight:normal">{html.escape(cell.text)}</i>')
                extra = f'<br><small style="font-weight:normal">{html.escape(cell.interval)}</small>' if cell.interval else ""
                if cell.detail and c in self.our_methods and cell.value is not None:
                    extra += f'<br><small style="font-weight:normal;color:#555">{html.escape(cell.detail)}</small>'
                tds.append(f'<td style="{pad}{border}"{title}>{text}{extra}</td>')
            body.append(f"<tr{style}>{''.join(tds)}</tr>")
        out = (f'<div style="overflow-x:auto"><table class="rql-results" style="font-size:80%;border-collapse:collapse">'
               f"<thead><tr>{''.join(top)}</tr><tr>{''.join(names)}</tr></thead>"
               f"<tbody>{''.join(body)}</tbody></table></div>")
        if commands and any(row.command for row in self.rows):
            out += commands_html([(row.label, row.command.splitlines()) for row in self.rows if row.command],
                                 "Commands for this project's runs, one block per task row")
        return out

    def _keys(self):
        return [key for title, cols in self.groups for key in (_key(title, c) for c in cols)]

    def _first_keys(self):
        return {_key(title, cols[0]) for title, cols in self.groups if cols}


def _key(group: str, column: str) -> str:
    return column if group.startswith(QAM_GROUP) else f"{group}/{column}"


QAM_GROUP = "QAM data"


def commands_html(rows: Sequence[tuple[str, Sequence[str]]], summary: str) -> str:
    """A collapsible block listing ``(label, commands)`` pairs: one line per command, wrapped to the
    page's width, so that a results table keeps narrow columns. A command's folders on the machine
    that ran it are written as RUN_DIR and DATA_DIR (``display_command``)."""
    items = "".join(
        f'<tr><td style="vertical-align:top;padding-right:6px">{html.escape(label)}</td><td>'
        + "".join(f'<code style="white-space:pre-wrap;word-break:break-word">{html.escape(display_command(c))}'
                  f"</code><br>" for c in cmds) + "</td></tr>"
        for label, cmds in rows)
    return (f'<details class="rql-commands"><summary>{html.escape(summary)} ({len(rows)})</summary>'
            f'<table style="font-size:80%;table-layout:fixed;width:100%"><colgroup><col style="width:22%"><col>'
            f"</colgroup>{items}</table></details>")


def display_command(command: str) -> str:
    """A record's command as the page shows it: an absolute ``--out`` or ``--data-dir`` (a folder of the
    machine that ran it, often a temporary one) is written RUN_DIR or DATA_DIR; the record keeps it.
    A relative folder (``results/...``, inside the repository) is kept."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        return command
    for i, word in enumerate(words[:-1]):
        if word in ("--out", "--data-dir") and os.path.isabs(os.path.expanduser(words[i + 1])):
            words[i + 1] = "RUN_DIR" if word == "--out" else "DATA_DIR"
    return shlex.join(words)


def paper_command(task: str, agent: str, seeds: int = PAPER_SEEDS) -> str:
    """The command that runs the paper's protocol for one task (official data; a GPU)."""
    dataset = "official" if domain_of(task) not in HUNDRED_M_DOMAINS else "PATH/TO/100M-DATASET.npz"
    return (f"python -m rql_lite train --task {task} --agent {agent} --seeds {' '.join(map(str, range(seeds)))} "
            f"--steps {PAPER_STEPS} --dataset {dataset} --profile full --out runs/{task}-{agent}")


def short_task(task: str) -> str:
    """``"cube-double-play-singletask-task2-v0"`` -> ``"cube-double-play-task2"``."""
    return task.replace("-singletask", "").replace("-v0", "")


def _interval_text(low: float, high: float) -> str:
    return f"[{100 * low:.0f}, {100 * high:.0f}]"


def _cell_from_summary(s: Summary) -> Cell:
    interval = _interval_text(*s.ci) if s.n_seeds > 1 else ""
    return Cell(value=s.mean, text=f"{100 * s.mean:.0f}", detail=s.describe(), records=s.records, interval=interval)


def _best_paper_scale(summaries: list[Summary], task: str, method: str) -> Summary | None:
    """The paper-scale summary of (task, method) with the most steps, then the most seeds."""
    found = [s for s in summaries if s.task == task and s.method == method and s.paper_scale]
    return max(found, key=lambda s: (s.steps, s.n_seeds)) if found else None


def _baseline_cell(key: str, method: str, success: dict, seeds: dict | None) -> Cell:
    value = success.get((key, method))
    if value is None:
        return Cell(None, "n/a")
    per_seed = (seeds or {}).get((key, method), ())
    interval = _interval_text(*confidence_interval(per_seed)) if len(per_seed) > 1 else ""
    return Cell(value, f"{100 * value:.0f}", f"published, {len(per_seed) or 12} seeds", interval=interval)


def _best_baseline_cell(key: str, methods: Sequence[str], success: dict, seeds: dict | None) -> Cell:
    found = [(success[(key, m)], -i, m) for i, m in enumerate(methods) if (key, m) in success]
    if not found:
        return Cell(None, "n/a")
    _, _, best = max(found)
    cell = _baseline_cell(key, best, success, seeds)
    return dataclasses.replace(cell, text=f"{cell.text} {best}", detail=f"{best}, the best of {len(methods)}; "
                               + cell.detail)


def _unfinished_cell(records: Sequence[Record], task: str, method: str) -> Cell:
    """``not run``, or, where only unfinished paper-scale records exist, their step count (no number)."""
    running = [r for r in records if r.task == task and r.method == method and not r.finished and is_paper_scale(r)]
    if not running:
        return Cell(None, NOT_RUN)
    r = max(running, key=lambda r: r.steps)
    seeds = sum(1 for x in running if x.steps == r.steps)
    return Cell(None, f"unfinished: {r.steps:,} of {(r.target_steps or r.steps):,} updates",
                f"{seeds} seed{'s' if seeds != 1 else ''}, {r.device}; no number until the run finishes")


def results_table(records: Iterable[Record] | None = None, baselines=None,
                  our_methods: Sequence[str] = ("RQL", "TFQL"), domains: Sequence[str] = BENCHMARK_DOMAINS,
                  baseline_columns: Sequence[str] | None = FAMILY_BASELINES, seeds: dict | None = None) -> Table:
    """The per-task table: per task, per domain (mean of its five tasks) and over all tasks, in percent.

    Columns ``our_methods`` come first and only from paper-scale records (``is_paper_scale``; the size
    of each is on its cell); a task with none says ``not run``, and a domain or the whole benchmark gets
    a number only when every one of its tasks has one. Then the published (QAM data) columns
    ``baseline_columns`` (default: the four families rql_lite implements; ``None``: all 16) and the best
    of all 16, each with its 95% interval over the 12 seeds.
    """
    records = find_records() if records is None else list(records)
    all_baselines, baseline_success = load_baselines() if baselines is None else baselines
    if seeds is None and baselines is None:
        seeds = load_baseline_seeds()
    shown = tuple(all_baselines if baseline_columns is None else [m for m in baseline_columns if m in all_baselines])
    best_name = f"best of {len(all_baselines)}"
    summaries = summarize(records)
    rows, all_task_cells = [], {m: [] for m in our_methods}

    def quoted(key: str) -> dict:
        cells = {m: _baseline_cell(key, m, baseline_success, seeds) for m in shown}
        cells[best_name] = _best_baseline_cell(key, all_baselines, baseline_success, seeds)
        return cells

    for domain in domains:
        task_cells = {m: [] for m in our_methods}
        for task in benchmark_tasks(domain):
            cells = quoted(task)
            for m in our_methods:
                summary = _best_paper_scale(summaries, task, m)
                cells[m] = _cell_from_summary(summary) if summary else _unfinished_cell(records, task, m)
                task_cells[m].append(cells[m])
            commands = []
            for m in our_methods:
                summary = _best_paper_scale(summaries, task, m)
                agent = next((a for a, name in METHOD_NAMES.items() if name == m), m.lower())
                commands.append(next(iter(summary.commands)) if summary else paper_command(task, agent))
            rows.append(Row(short_task(task), "task", cells, "\n".join(commands)))
        cells = quoted(domain)
        for m in our_methods:
            cells[m] = _aggregate(task_cells[m], 5)
            all_task_cells[m].extend(task_cells[m])
        rows.append(Row(f"{domain} (5 tasks)", "domain", cells))
    cells = quoted("all")
    for m in our_methods:
        cells[m] = _aggregate(all_task_cells[m], 5 * len(domains))
    rows.append(Row(f"all ({5 * len(domains)} tasks)", "all", cells))
    groups = ((f"{QAM_GROUP}, 1M steps, 12 seeds", shown + (best_name,)),)
    return Table(tuple(our_methods), groups, tuple(rows), ours_title="this project, paper's configuration")


def category_table(records: Iterable[Record] | None = None, paper: PaperTable | None = None, baselines=None,
                   our_methods: Sequence[str] = ("RQL", "TFQL"), paper_methods: Sequence[str] = PAPER_OWN_METHODS,
                   baseline_columns: Sequence[str] = FAMILY_BASELINES, seeds: dict | None = None) -> Table:
    """The paper's case by category (the paper's Table 1 rows), in percent: this project's paper-scale
    RQL and TFQL first (a domain mean only when all its five tasks are run), then the paper's own columns
    (``paper_methods``, from its Table 1, 4 seeds), then the published QAM data (``baseline_columns`` and
    the best of its 16, each with its 95% interval over 12 seeds)."""
    paper = load_paper_table() if paper is None else paper
    per_task = results_table(records, baselines, our_methods, baseline_columns=baseline_columns, seeds=seeds)
    by_label = {row.label: row for row in per_task.rows}
    qam_title, qam_cols = per_task.groups[0]
    paper_title = "the RQL paper, Table 1"
    rows = []
    for category, domain in zip(paper.categories, paper.domains):
        source = by_label[f"{domain} (5 tasks)"] if domain != "all" else per_task.rows[-1]
        cells = {m: source.cells[m] for m in our_methods}
        for m in paper_methods:
            cells[_key(paper_title, m)] = Cell(paper.value(domain, m), f"{paper.value(domain, m):.0f}",
                                               "the paper's number (its Table 1, 4 seeds)")
        cells.update({c: source.cells[c] for c in qam_cols})
        rows.append(Row(category if domain != "all" else source.label, "domain" if domain != "all" else "all", cells))
    groups = ((paper_title, tuple(paper_methods)), (qam_title, qam_cols))
    return Table(tuple(our_methods), groups, tuple(rows), ours_title="this project, paper's configuration")


def paper_table_html(paper: PaperTable | None = None) -> str:
    """The paper's Table 1 transposed to fit a page: one row per method (its own three first), one column
    per category (short names, with a key below), in percent; the best of each column in bold."""
    paper = load_paper_table() if paper is None else paper
    short = {"antmaze-large-navigate": "ant L", "antmaze-giant-navigate": "ant G",
             "humanoidmaze-medium-navigate": "hum M", "humanoidmaze-large-navigate": "hum L", "scene-play": "scene",
             "puzzle-3x3-play": "puz 3", "puzzle-4x4-play": "puz 4", "cube-double-play": "cube 2",
             "cube-triple-play": "cube 3", "cube-quadruple-play": "cube 4", "all": "all 50"}
    pad = "padding:2px 5px;text-align:right"
    head = "".join(f'<th style="{pad}" title="{html.escape(c)}">{html.escape(short.get(d, d))}</th>'
                   for c, d in zip(paper.categories, paper.domains))
    order = list(PAPER_OWN_METHODS) + [m for m in paper.methods if m not in PAPER_OWN_METHODS]
    best = {c: max(paper.percent[(c, m)] for m in paper.methods) for c in paper.categories}
    body = []
    for m in order:
        tds = "".join(f'<td style="{pad}">' + (f"<b>{paper.percent[(c, m)]:.0f}</b>" if paper.percent[(c, m)] == best[c]
                                               else f"{paper.percent[(c, m)]:.0f}") + "</td>" for c in paper.categories)
        style = ' style="background:#f3f3f3"' if m in PAPER_OWN_METHODS else ""
        body.append(f'<tr{style}><td style="padding:2px 5px">{html.escape(m)}</td>{tds}</tr>')
    key = "; ".join(f"{short[d]}: {c}" for c, d in zip(paper.categories, paper.domains) if d != "all")
    return (f'<div style="overflow-x:auto"><table class="rql-paper" style="font-size:80%;border-collapse:collapse">'
            f'<thead><tr><th style="padding:2px 5px;text-align:left">method</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div><p style=\"font-size:80%\">Columns: {html.escape(key)}; "
            f"all 50: the mean over the 50 tasks. Shaded: the paper's own runs (4 seeds); the others are the "
            f"inherited baselines. Bold: the best of a column.</p>")


def _aggregate(cells: list[Cell], expected: int) -> Cell:
    done = [c for c in cells if c.value is not None]
    if len(done) < expected:
        return Cell(None, f"{NOT_RUN} ({len(done)}/{expected} tasks)")
    value = float(np.mean([c.value for c in done]))
    return Cell(value, f"{100 * value:.0f}", f"mean of {expected} tasks", tuple(p for c in done for p in c.records))


METHOD_ORDER = tuple(METHOD_NAMES.values())  # RQL, TFQL, BC flow, FQL, IFQL, FAWAC, FBRAC


def _method_rank(method: str) -> tuple:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def networks(config: dict) -> str:
    """``"3 x 256 networks, 2 value heads, batch 256"``."""
    return (f"{len(config['policy_hidden'])} x {config['policy_hidden'][0]} networks, {config['num_values']} value "
            f"heads, batch {config['batch_size']}")


def _main_knob(config: dict) -> str:
    """``", alpha 3"``: the knob a method is tuned by (``configs.BASELINE_KNOBS`` for the baselines), as
    its config holds it; nothing for the BC agent, which has none."""
    agent = config.get("agent", "rql")
    if agent == "bc":
        return ""
    knob = BASELINE_KNOBS[agent][0] if agent in BASELINE_KNOBS else "alpha"
    return f", {knob.replace('_', ' ')} {config[knob]:g}" if knob in config else ""


def summaries_html(summaries: Sequence[Summary], records: Iterable[Record] = ()) -> str:
    """Every group of runs of ours: task, method, success with its 95% interval, per seed, and its size
    (updates, seeds, evaluation episodes, data, device, the wall time of the run where ``records`` holds
    it, networks, whether the configuration is the paper's); then the unfinished runs among ``records`` with their last evaluation; then the commands
    that produced them in a collapsible block. Methods in the order RQL, TFQL, BC flow, FQL, IFQL,
    FAWAC, FBRAC."""
    pad = "padding:2px 6px;vertical-align:top"
    head = "".join(f'<th style="{pad};text-align:left">{h}</th>' for h in
                   ("task", "method", "success, % [95% CI]", "per seed", "size"))
    ordered = sorted(summaries, key=lambda s: (s.task, _method_rank(s.method), -s.steps))
    records = list(records)
    by_path = {r.path: r for r in records}
    rows = []
    for s in ordered:
        ci = f" {_interval_text(*s.ci)}" if s.n_seeds > 1 else ""
        config = "the paper's configuration" if s.paper_scale else "reduced configuration"
        wall = max((r.wall_time_s for r in by_path.values() if r.path in s.records), default=None)
        wall = f", {wall / 60:.0f} min of wall time" if wall else ""
        size = f"{s.describe()}{wall}; {config}: {networks(s.config)}{_main_knob(s.config)}"
        cells = (short_task(s.task), s.method, f"{100 * s.mean:.0f}{ci}",
                 ", ".join(f"{100 * v:.0f}" for v in s.success_rates), size)
        rows.append("<tr>" + "".join(f'<td style="{pad}">{html.escape(str(c))}</td>' for c in cells) + "</tr>")
    out = (f'<div style="overflow-x:auto"><table class="rql-runs" style="font-size:80%;border-collapse:collapse">'
           f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    unfinished = [r for r in records if not r.finished]
    if unfinished:
        out += "<p style=\"font-size:80%\">Unfinished runs (left out of every mean above): " + "; ".join(
            html.escape(unfinished_line(group)) for group in _group_unfinished(unfinished)) + ".</p>"
    labels = [(f"{short_task(s.task)}, {s.method}", s.commands) for s in ordered]
    return out + commands_html(labels, "Commands that produced these runs")


@dataclasses.dataclass(frozen=True)
class BesidePublished:
    """One group of runs of ours beside the published runs of the same method on the same task: where the
    published runs stood at the first released step at or after ours (``at``) and at 1M updates (``end``)."""

    ours: Summary
    at: PublishedPoint
    end: PublishedPoint


def beside_published(summaries: Iterable[Summary], curves: dict | None = None) -> list[BesidePublished]:
    """Each summary whose method has a published curve on its task, with that curve at the summary's
    step (the next released point, every 50,000 updates) and at 1M. Methods without a released curve
    (RQL, TFQL, the BC flow) are left out: nothing is borrowed for them."""
    curves = load_curves() if curves is None else curves
    out = []
    for s in sorted(summaries, key=lambda s: (s.task, _method_rank(s.method), -s.steps)):
        at, end = published_at(s.task, s.method, s.steps, curves), published_at(s.task, s.method, PAPER_STEPS, curves)
        if at is not None and end is not None:
            out.append(BesidePublished(s, at, end))
    return out


def html_table(head: Sequence[str], rows: Iterable[Sequence[str]], css_class: str) -> str:
    """A plain table of text cells (escaped) in a horizontally scrolling box, the style of the pages' run tables."""
    pad = "padding:2px 6px;vertical-align:top"
    top = "".join(f'<th style="{pad};text-align:left">{html.escape(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f'<td style="{pad}">{html.escape(str(c))}</td>' for c in row) + "</tr>" for row in rows)
    return (f'<div style="overflow-x:auto"><table class="{css_class}" style="font-size:80%;border-collapse:collapse">'
            f"<thead><tr>{top}</tr></thead><tbody>{body}</tbody></table></div>")


def beside_published_html(rows: Sequence[BesidePublished]) -> str:
    """The table of ``beside_published``: ours (updates, per seed, networks), the published mean and seed range
    at the matched step, and at 1M. Success in percent."""
    head = ("task", "method", "ours: updates", "ours: per seed", "published at the next released step: mean [seed range]",
            "published at 1M")
    body = [(short_task(r.ours.task), r.ours.method, f"{r.ours.steps:,}", ", ".join(f"{100 * v:.0f}" for v in r.ours.success_rates),
             f"{r.at.step:,}: {100 * r.at.mean:.0f} [{100 * r.at.range[0]:.0f}, {100 * r.at.range[1]:.0f}]",
             f"{100 * r.end.mean:.0f} [{100 * r.end.range[0]:.0f}, {100 * r.end.range[1]:.0f}]") for r in rows]
    return html_table(head, body, "rql-beside")


def _group_unfinished(records: Sequence[Record]) -> list[list[Record]]:
    groups = defaultdict(list)
    for r in records:
        groups[(r.task, r.method, r.steps, r.device)].append(r)
    return [sorted(g, key=lambda r: r.seed) for _, g in sorted(groups.items())]


def unfinished_line(group: Sequence[Record]) -> str:
    """One sentence for the seeds of one unfinished run: steps reached, its last evaluation and its size."""
    r = group[0]
    target = r.target_steps or r.steps
    last = [c for c in (g.success_curve[-1] if g.success_curve else None for g in group) if c is not None]
    evaluated = (f"last evaluated at {last[0][0]:,} updates: success " + ", ".join(f"{100 * c[1]:.0f}" for c in last)
                 + f" % over {r.eval_episodes} episodes per seed") if last else "not evaluated yet"
    return (f"{short_task(r.task)}, {r.method}, {len(group)} seed{'s' if len(group) != 1 else ''}, "
            f"{r.steps:,} of {target:,} updates, {r.dataset_source} data, {r.device}; {evaluated}")


def domain_means(table: Table) -> dict[str, dict[str, float | None]]:
    """``{domain row label: {column: value or None}}`` for plotting."""
    keys = table.our_methods + tuple(table._keys())
    return {row.label: {k: row.cells[k].value for k in keys} for row in table.rows if row.kind != "task"}


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
