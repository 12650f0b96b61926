"""Results tables: numbers only from records, intervals computed right, refusals for bad records."""
import json
import math
import os

import numpy as np
import pytest

from rql_lite.agent import config_dict
from rql_lite.configs import agent_config
from rql_lite.runs import records, report

TASK = "cube-double-play-singletask-task2-v0"


def write_record(root, run, seed, success, finished=True, task=TASK, agent="rql", steps=1000, config=None,
                 method=None, target_steps=None):
    """A record as ``train`` writes it (``records.make_record``), at ``root/run/records/seed{seed}.json``."""
    record = records.make_record(
        task=task, agent=agent, method=method or agent.upper(), seed=seed, steps=steps, target_steps=target_steps or steps,
        finished=finished, profile="full",
        config=config or config_dict(agent_config(task, 40, 5, profile="full", agent=agent)),
        dataset={"source": "official", "sha256": "0" * 64, "path": "x.npz"}, eval_episodes=50,
        success_curve=[{"step": steps, "success_rate": success, "episodes": 50, "wall_time_s": 1.0}],
        git_commit="abc", device="gpu: test", wall_time_s=1.0, runs_batching="vmap",
        command=f"python -m rql_lite train --task {task} --out {run}")
    path = os.path.join(root, run, "records", f"seed{seed}.json")
    records.write_record(path, record)
    return path


def test_summary_mean_and_student_t_interval_by_hand(tmp_path):
    for seed, success in enumerate([0.2, 0.4, 0.6]):
        write_record(tmp_path, "a", seed, success)
    write_record(tmp_path, "a", 3, 0.99, finished=False)  # a run still going is left out
    (summary,) = report.summarize(report.find_records(str(tmp_path)))
    assert summary.n_seeds == 3 and summary.seeds == (0, 1, 2)
    assert summary.mean == pytest.approx(0.4)
    half = 4.302653 * 0.2 / math.sqrt(3)  # t(0.975, 2 dof) * sample std / sqrt(n)
    assert summary.ci == pytest.approx((max(0.0, 0.4 - half), 0.4 + half), abs=1e-5)  # 0.4 - half < 0: clipped
    assert summary.paper_scale
    # Two seeds far apart: the t interval (factor 12.7) is clipped to the range of a success rate.
    assert report.confidence_interval([0.0, 1.0]) == (0.0, 1.0)
    assert all(math.isnan(v) for v in report.confidence_interval([0.5]))  # one seed: no interval


def test_every_number_in_the_repository_table_has_records_behind_it():
    records = report.find_records()
    table = report.results_table(records)
    by_path = {r.path: r for r in records}
    numbers = 0
    for row, method, cell in table.our_cells():
        if cell.value is None:
            assert cell.text.startswith((report.NOT_RUN, "unfinished: ")), (row.label, method, cell.text)
            assert not cell.records
            continue
        numbers += 1
        assert cell.records, f"{row.label} / {method} shows {cell.text} with no record behind it"
        behind = [by_path[p] for p in cell.records]
        assert all(r.finished and r.method == method for r in behind)
        if row.kind == "task":
            assert np.mean([r.success_rate for r in behind]) == pytest.approx(cell.value)
    # Baseline cells are the published numbers, read from the file, never ours.
    methods, success = report.load_baselines()
    assert len(methods) == 16 and set(methods) <= set(report.PAPER_BASELINE_ORDER)
    row = next(r for r in table.rows if r.label == "cube-double-play-task2")
    assert row.cells["FQL"].value == success[(TASK, "FQL")]
    print(f"{numbers} cells of ours hold a number")


def test_a_paper_scale_record_fills_its_cell_and_a_reduced_one_does_not(tmp_path):
    for seed in range(2):
        write_record(tmp_path, "paper", seed, 0.5 + 0.1 * seed)
    small = config_dict(agent_config(TASK, 40, 5, profile="smoke", agent="tfql"))
    write_record(tmp_path, "small", 0, 0.9, agent="tfql", config=small)
    table = report.results_table(report.find_records(str(tmp_path)))
    row = next(r for r in table.rows if r.label == "cube-double-play-task2")
    assert row.cells["RQL"].value == pytest.approx(0.55) and len(row.cells["RQL"].records) == 2
    assert row.cells["RQL"].text == "55" and row.cells["RQL"].interval.startswith("[")  # percent, with its interval
    assert "2 seeds" in row.cells["RQL"].detail
    rql_command, tfql_command = row.command.splitlines()  # one command per method of ours
    assert rql_command.endswith("--out paper") and "--agent tfql --seeds 0 1 2 3 --steps 1000000" in tfql_command
    assert row.cells["TFQL"].value is None and row.cells["TFQL"].text == report.NOT_RUN
    domain = next(r for r in table.rows if r.label == "cube-double-play (5 tasks)")
    assert domain.cells["RQL"].value is None and domain.cells["RQL"].text == f"{report.NOT_RUN} (1/5 tasks)"
    html = table.to_html()
    main, commands = html.split("<details", 1)
    assert ">55<" in main and main.count("<tr") == len(table.rows) + 2  # two header rows
    assert main.index(">RQL<") < main.index(">FQL<")                    # ours first
    assert "--out paper" in commands and "--out paper" not in main     # commands in their own block
    assert "<details" not in table.to_html(commands=False)
    runs = report.summaries_html(report.summarize(report.find_records(str(tmp_path))))
    assert runs.count("<details") == 1 and "--out small" in runs.split("<details", 1)[1]


def test_bad_records_are_refused_with_their_path(tmp_path):
    path = tmp_path / "x" / "records" / "seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="seed0.json"):
        report.find_records(str(tmp_path))
    path.write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(ValueError, match="not an rql_lite run record"):
        report.find_records(str(tmp_path))


def test_one_seed_recorded_twice_with_different_results_is_an_error(tmp_path):
    write_record(tmp_path, "a", 0, 0.3)
    write_record(tmp_path, "b", 0, 0.7)
    with pytest.raises(ValueError, match="recorded twice"):
        report.summarize(report.find_records(str(tmp_path)))


def test_the_committed_records_read_back_and_a_record_without_newer_fields_gets_their_defaults(tmp_path):
    """Records written before fields existed (the committed ones lack runs_batching; older configs lack
    matmul_precision) read as what they ran with."""
    committed = report.find_records()
    assert committed and all(r.config["matmul_precision"] == "default" for r in committed)
    path = write_record(tmp_path, "old", 0, 0.5)
    raw = json.load(open(path))
    del raw["config"]["matmul_precision"], raw["runs_batching"]
    json.dump(raw, open(path, "w"))
    (record,) = records.find_records(str(tmp_path))
    assert record.config["matmul_precision"] == "default" and record.success_rate == 0.5
    with pytest.raises(ValueError, match="make_record"):
        records.write_record(str(tmp_path / "x.json"), {"task": TASK})


def test_the_papers_table_reads_back_and_its_inherited_columns_match_the_qam_data_but_qsm():
    """results/baselines/README.md: 168 of the 176 inherited cells agree within a point; the 8 others are QSM."""
    paper = report.load_paper_table()
    assert len(paper.methods) == 19 and set(report.PAPER_OWN_METHODS) <= set(paper.methods)
    assert paper.domains[:-1] == report.BENCHMARK_DOMAINS and paper.domains[-1] == "all"
    assert paper.value("cube-double-play", "TFQL") == 48 and paper.value("cube-double-play", "RQL") == 23
    methods, _ = report.load_baselines()
    inherited = [m for m in methods if m in paper.methods]
    assert len(inherited) * len(paper.categories) == 176
    off = report.paper_table_disagreements()
    assert len(off) == 8 and {m for _, m, _, _ in off} == {"QSM"}


def test_the_category_table_puts_ours_first_and_fills_a_domain_only_from_all_its_tasks(tmp_path):
    from rql_lite.configs import benchmark_tasks

    tasks = benchmark_tasks("scene-play")
    for i, task in enumerate(tasks):
        for seed in range(2):
            write_record(tmp_path, f"scene{i}", seed, 0.2 * i, task=task)
    write_record(tmp_path, "tfql", 0, 0.5, task=tasks[0], agent="tfql")
    records_found = report.find_records(str(tmp_path))
    table = report.category_table(records_found)
    assert table.columns[:2] == ("RQL", "TFQL") and table.our_methods == ("RQL", "TFQL")
    scene = next(r for r in table.rows if r.label == "scene-play-sparse")
    assert scene.cells["RQL"].value == pytest.approx(0.4) and len(scene.cells["RQL"].records) == 10
    assert scene.cells["TFQL"].value is None and scene.cells["TFQL"].text == f"{report.NOT_RUN} (1/5 tasks)"
    assert scene.cells["the RQL paper, Table 1/RQL"].text == "89" and scene.cells["FQL"].interval
    by_path = {r.path: r for r in records_found}
    for row, method, cell in table.our_cells():
        assert (cell.value is None) == (not cell.records)
        assert all(by_path[p].method == method for p in cell.records)
    html = table.to_html()
    assert html.index("this project") < html.index("the RQL paper") < html.index("QAM data")


def test_pages_show_no_machine_folders_in_commands_and_list_unfinished_runs(tmp_path):
    assert report.display_command("python -m rql_lite train --out /tmp/work/runs/x --data-dir /scratch/d --seeds 0") \
        == "python -m rql_lite train --out RUN_DIR --data-dir DATA_DIR --seeds 0"
    assert report.display_command("train --out results/ogbench-cpu/x") == "train --out results/ogbench-cpu/x"
    write_record(tmp_path, "done", 0, 0.5)
    write_record(tmp_path, "going", 0, 0.0, finished=False, agent="tfql", task="scene-play-singletask-task1-v0")
    found = report.find_records(str(tmp_path))
    html = report.summaries_html(report.summarize(found), found)
    assert "Unfinished runs" in html and "scene-play-task1, TFQL, 1 seed" in html


def test_a_task_with_only_unfinished_paper_scale_runs_shows_their_steps_and_no_number(tmp_path):
    for seed in range(2):
        write_record(tmp_path, "tfql", seed, 0.9, finished=False, agent="tfql", steps=16_000, target_steps=23_000)
    table = report.results_table(report.find_records(str(tmp_path)))
    row = next(r for r in table.rows if r.label == "cube-double-play-task2")
    cell = row.cells["TFQL"]
    assert cell.value is None and not cell.records and cell.text == "unfinished: 16,000 of 23,000 updates"
    assert "2 seeds" in cell.detail and row.cells["RQL"].text == report.NOT_RUN
    domain = next(r for r in table.rows if r.label == "cube-double-play (5 tasks)")
    assert domain.cells["TFQL"].value is None   # an unfinished run fills no mean


def test_runs_stopped_early_are_compared_at_the_last_step_every_run_evaluated(tmp_path):
    def curve_record(run, seed, agent, points, target):
        path = write_record(tmp_path, run, seed, points[-1][1], finished=points[-1][0] == target, agent=agent,
                            steps=points[-1][0], target_steps=target)
        raw = json.loads(open(path).read())
        raw["success_curve"] = [{"step": s, "success_rate": v, "episodes": 50, "wall_time_s": 1.0} for s, v in points]
        records.write_record(path, raw)

    for seed in (0, 1):  # RQL planned for 40 updates, stopped at 20; TFQL planned for and finished at 30
        curve_record("rql", seed, "rql", [(10, 0.1), (20, 0.5 + 0.1 * seed)], target=40)
        curve_record("tfql", seed, "tfql", [(10, 0.0), (20, 0.2), (30, 0.9)], target=30)
    found = report.find_records(str(tmp_path))
    assert [s.method for s in report.summarize(found)] == ["TFQL"]  # the stopped run is not a finished one
    assert report.common_step(found) == 20
    at = {s.method: s for s in report.summarize_at_step(found, 20)}
    assert sorted(at) == ["RQL", "TFQL"] and all(s.steps == 20 and s.n_seeds == 2 for s in at.values())
    assert at["RQL"].success_rates == (0.5, 0.6) and at["TFQL"].mean == pytest.approx(0.2)
    assert report.summarize_at_step(found, 30)[0].method == "TFQL" and len(report.summarize_at_step(found, 30)) == 1
    assert report.common_step([]) is None
    assert report.matched_step(found) == 20

    # Both finished, one planned (or extended) twice as long: still compared where both evaluated.
    for seed in (0, 1):
        curve_record("rql", seed, "rql", [(10, 0.1), (20, 0.5), (30, 0.7), (40, 0.8)], target=40)
    found = report.find_records(str(tmp_path))
    assert all(r.finished for r in found) and report.matched_step(found) == 30
    tfql_only = [r for r in found if r.method == "TFQL"]
    assert report.matched_step(tfql_only) is None  # all at one step, finished: nothing to match


def test_a_group_on_two_generations_of_its_data_says_so():
    import dataclasses as dc

    from rql_lite.runs.records import find_records

    base = [r for r in find_records() if r.method == "RQL" and "scene" in r.task][:2]
    assert len(base) == 2
    first = dc.replace(base[0], seed=0, dataset_sha256="ec676a14" + "0" * 56)
    same = dc.replace(base[1], seed=1, dataset_sha256=first.dataset_sha256)
    other = dc.replace(base[1], seed=1, dataset_sha256="cd322111" + "0" * 56)
    (one,) = report.summarize([first, same])
    assert len(one.datasets) == 1 and "generations" not in one.describe()
    (two,) = report.summarize([first, other])
    assert len(two.datasets) == 2 and "2 generations of it, hashes ec676a14, cd322111" in two.describe()
