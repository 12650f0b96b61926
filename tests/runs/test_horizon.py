"""rql_lite.runs.horizon: the horizon study's points and readings, on records made up for the test."""
from __future__ import annotations

import os

import pytest

from rql_lite.runs import horizon
from rql_lite.runs.records import Record

CONFIG = dict(agent="rql", flow_steps=10, horizon=5, alpha=3.0, policy_hidden=[256, 256, 256], num_values=2)


def record(method, seed, curve, folder="run", **config):
    cfg = dict(CONFIG, agent=method.lower(), **config)
    steps = curve[-1][0]
    return Record(path=os.path.join(folder, "records", f"seed{seed}.json"), task=horizon.KSWEEP_TASK, method=method,
                  agent=method.lower(), seed=seed, steps=steps, target_steps=steps, finished=True,
                  success_rate=curve[-1][1], eval_episodes=30, config=cfg, dataset_source="generated", device="cpu",
                  command="", git_commit=None, wall_time_s=100.0, success_curve=tuple(curve))


def test_points_are_read_at_the_last_step_every_run_evaluated():
    records = [record("RQL", 0, [(5, 0.2), (10, 0.8)], flow_steps=1),
               record("RQL", 1, [(5, 0.4), (10, 0.6)], flow_steps=1),
               record("TFQL", 0, [(5, 0.1)], flow_steps=1)]  # stopped at 5: everything is read there
    points = horizon.sweep_points(records, lambda r: r.config["flow_steps"])
    assert [(p.method, p.setting, p.step, p.success_rates) for p in points] == [
        ("RQL", 1, 5, (0.2, 0.4)), ("TFQL", 1, 5, (0.1,))]
    assert points[0].mean == pytest.approx(0.3) and points[0].n_seeds == 2
    later = horizon.sweep_points(records[:2], lambda r: r.config["flow_steps"])
    assert later[0].step == 10 and later[0].success_rates == (0.8, 0.6)


def test_the_gap_reading_says_whether_the_gap_grows():
    def points(gaps_by_k):
        recs = []
        for k, (rql, tfql) in gaps_by_k.items():
            recs += [record("RQL", s, [(10, v)], flow_steps=k) for s, v in enumerate(rql)]
            recs += [record("TFQL", s, [(10, v)], flow_steps=k) for s, v in enumerate(tfql)]
        return horizon.sweep_points(recs, lambda r: r.config["flow_steps"])

    growing = horizon.gap_reading(points({1: ((0.8, 0.9), (0.8, 0.7)), 10: ((0.9, 0.8), (0.2, 0.3))}))
    assert growing["grows"] is True and growing["separated"] == [10]
    assert growing["gaps"] == pytest.approx([0.1, 0.6])
    assert "every RQL seed above every TFQL seed" in growing["per_setting"][1]
    shrinking = horizon.gap_reading(points({1: ((0.9, 0.9), (0.1, 0.2)), 30: ((0.5, 0.6), (0.5, 0.4))}))
    assert shrinking["grows"] is False and shrinking["ahead_range"] == pytest.approx((0.55, 0.9))
    assert horizon.gap_reading(points({10: ((0.9,), (0.1,))}))["grows"] is None


def test_a_sweep_refuses_records_that_differ_in_more_than_its_setting(tmp_path, monkeypatch):
    same = [record("RQL", 0, [(10, 0.5)], flow_steps=1), record("TFQL", 0, [(10, 0.5)], flow_steps=30)]
    assert horizon._shared_config(same, ignore=("flow_steps",))["num_values"] == 2
    with pytest.raises(ValueError, match="differ in more than"):
        horizon._shared_config(same + [record("RQL", 1, [(10, 0.5)], num_values=10)], ignore=("flow_steps",))


def test_run_rows_give_each_run_its_cost_per_agent_update():
    recs = [record("RQL", s, [(10, 0.5)], folder="pilot-a") for s in (0, 1)] + [record("TFQL", 0, [(10, 0.0)], folder="pilot-b")]
    rows = horizon.run_rows(recs)
    assert [(r.folder, r.agents, r.steps) for r in rows] == [("pilot-a", 2, 10), ("pilot-b", 1, 10)]
    assert rows[0].seconds_per_agent_update == pytest.approx(100.0 / 20)
    assert "5000" in horizon.run_rows_html(rows)  # ms per agent-update
