"""rql_lite.runs.published: the committed published numbers, and where a run stopped early meets them."""
from __future__ import annotations

import pytest

from rql_lite.runs import published

SCENE1 = "scene-play-singletask-task1-v0"


@pytest.fixture(scope="module")
def curves():
    return published.load_curves()


def test_curves_end_where_the_1M_table_stands(curves):
    methods, success = published.load_baselines()
    seeds_1m = published.load_baseline_seeds()
    checked = 0
    for (task, method), curve in curves.items():
        if (task, method) in success:
            assert max(curve) == 1_000_000
            assert sum(curve[1_000_000]) / 12 == pytest.approx(success[(task, method)], abs=1e-3), (task, method)
            assert curve[1_000_000] == pytest.approx(seeds_1m[(task, method)], abs=1e-3)
            checked += 1
    assert checked > 300  # six methods on 50 tasks, their domains and "all"


def test_every_curve_has_twenty_points_of_twelve_seeds(curves):
    for key, curve in curves.items():
        assert sorted(curve) == list(range(50_000, 1_000_001, published.CURVE_INTERVAL)), key
        assert {len(v) for v in curve.values()} == {12}, key


def test_a_run_stopped_between_points_meets_the_next_released_one(curves):
    at_40k = published.published_at(SCENE1, "FQL", 40_000, curves)
    at_50k = published.published_at(SCENE1, "FQL", 50_000, curves)
    assert at_40k == at_50k and at_40k.step == 50_000
    assert at_40k.mean == pytest.approx(0.157, abs=1e-3)  # the README's example: FQL 0.16 at 50K on scene task 1
    assert at_40k.range == (0.02, 0.34)
    assert published.published_at(SCENE1, "FQL", 50_001, curves).step == 100_000


def test_nothing_is_borrowed_where_nothing_was_released(curves):
    assert published.published_at(SCENE1, "RQL", 40_000, curves) is None  # the paper's per-task RQL is not public
    assert published.published_at("pointmaze-medium-navigate-singletask-task1-v0", "FQL", 40_000, curves) is None
    assert published.published_at(SCENE1, "FQL", 1_000_001, curves) is None


def test_report_sets_our_runs_beside_the_published_curve_at_the_same_updates(curves):
    from rql_lite.runs import report

    records = [r for r in report.find_records() if r.task == SCENE1 and not report.is_paper_scale(r)]
    summaries = report.summarize(records)
    rows = report.beside_published(summaries, curves)
    methods = {row.ours.method for row in rows}
    assert {"FQL", "IFQL", "FAWAC", "FBRAC"} <= methods and not methods & {"RQL", "TFQL", "BC flow"}
    for row in rows:
        assert row.at.step >= row.ours.steps and row.at.step - row.ours.steps < published.CURVE_INTERVAL
        assert row.end.step == 1_000_000
    html = report.beside_published_html(rows)
    assert html.count("<tr>") == len(rows) + 1 and "50,000: 16 [2, 34]" in html  # FQL at 40,000 meets 50,000



def test_ties_in_the_paper_table_are_named_together():
    paper = published.load_paper_table()
    names, value = paper.leaders("cube-triple-play", exclude=("RQL",))
    assert value == 8 and names.count(",") + names.count(" and ") >= 3  # four methods tie at 8
    assert paper.best("cube-triple-play", exclude=("RQL",))[0] in names
