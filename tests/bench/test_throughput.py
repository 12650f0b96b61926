"""The throughput benchmark's pieces at tiny size: kernel counting, the runs sweep's layout and record,
projections, and the bench command line. No timing is asserted (a shared machine's speed is not a test)."""

import jax
import pytest

from rql_lite.agent import AgentConfig, init_state
from rql_lite.bench import throughput as bench
from rql_lite.cli import build_parser
from rql_lite.train import train_step

TINY = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(8,), value_hidden=(8,), num_values=2,
                   batch_size=4, flow_steps=2)

HLO = """HloModule m

%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = f32[4]{0} get-tuple-element(%p), index=1
  %y = f32[4]{0} fusion(%x), kind=kLoop, calls=%fused
  %z = f32[4]{0} copy(%y)
  ROOT %t = (s32[], f32[4]{0}) tuple(%i, %z)
}

%cond (p.1: (s32[], f32[4])) -> pred[] {
  %p.1 = (s32[], f32[4]{0}) parameter(0)
  ROOT %c = pred[] fusion(%p.1), kind=kLoop, calls=%fused_cond
}

ENTRY %main (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4]{0}) tuple(%zero, %a)
  %w = (s32[], /*index=1*/f32[4]{0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"10"}}
  %out = f32[4]{0} get-tuple-element(%w), index=1
  ROOT %d = f32[4]{0} dot(%out, %out), lhs_contracting_dims={0}, rhs_contracting_dims={0}
}
"""


def test_count_kernels_counts_loop_bodies_by_their_trip_count():
    # the loop: (fusion + copy) in the body and one fusion in the condition, 10 times; then one dot
    assert bench.count_kernels(HLO) == 10 * (2 + 1) + 1


def test_count_kernels_of_a_real_update_grows_with_its_flow_steps():
    def kernels(config):
        state = init_state(config, jax.random.PRNGKey(0))
        dataset = bench.synthetic_dataset(config, size=100, episode_length=20)
        return bench.count_kernels(jax.jit(train_step).lower(state, dataset, jax.random.PRNGKey(1)).compile().as_text())

    few, more = kernels(TINY), kernels(TINY.replace(flow_steps=6))
    assert 20 < few < more


def test_sweep_layout_is_tasks_by_seeds():
    assert bench.sweep_layout(20) == ([t for t in range(5) for _ in range(4)], [s for _ in range(5) for s in range(4)])
    assert bench.sweep_layout(8) == ([0, 0, 1, 1, 2, 2, 3, 3], [0, 1] * 4)
    assert bench.sweep_layout(1) == ([0], [0])
    assert bench.default_runs("paper", "gpu") == (1, 2, 4, 8, 16, 20)
    assert bench.default_runs("paper", "cpu") == (1, 2, 4)
    assert bench.default_runs("smoke", "cpu") == (1, 2, 4, 8, 16, 20)


def test_a_multi_task_synthetic_dataset_has_one_reward_column_per_task():
    dataset = bench.synthetic_dataset(TINY, size=50, episode_length=10, num_tasks=5)
    assert dataset.num_tasks == 5 and dataset.rewards.shape == (50, 5) and dataset.masks.shape == (50, 5)


def test_the_runs_sweep_records_every_r():
    dataset = bench.synthetic_dataset(TINY, size=200, episode_length=20, num_tasks=5)
    sweep = bench.sweep_runs(TINY, [2, 1], updates_per_dispatch=3, min_seconds=0.01, rounds=2, dataset=dataset)
    rows = sweep["by_runs"]
    assert [r["runs"] for r in rows] == [1, 2]
    for row in rows:
        assert row["aggregate_updates_per_s"] > 0 and len(row["round_rates"]) == 2
        assert row["per_run_updates_per_s"] == pytest.approx(row["aggregate_updates_per_s"] / row["runs"])
        assert row["flops_per_update"] > 0 and row["kernels_per_update"] > 0
    assert rows[0]["ratio_to_one_run"] == 1.0
    one = sweep["one_run_program"]  # one run's own (not vmapped) program, timed in the same rounds
    assert one["aggregate_updates_per_s"] > 0 and one["kernels_by_kind_per_update"]["fusion"] > 0
    assert rows[1]["ratio_to_one_run_program"] == pytest.approx(rows[1]["aggregate_updates_per_s"]
                                                                / one["aggregate_updates_per_s"])
    assert rows[1]["flops_per_update"] == pytest.approx(rows[0]["flops_per_update"], rel=0.05)  # per run


def test_projections_pick_the_fastest_way_to_fill_a_domain():
    sweep = {"by_runs": [{"runs": 1, "per_run_updates_per_s": 1000.0},
                         {"runs": 8, "per_run_updates_per_s": 400.0},    # 3 programs (8 + 8 + 4)
                         {"runs": 20, "per_run_updates_per_s": 100.0}]}  # 1 program
    p = bench.projections(sweep)
    hours = {o["runs_per_program"]: o["domain_hours"] for o in p["by_runs_per_program"]}
    assert hours[1] == pytest.approx(20 * 1e6 / 1000 / 3600)
    assert hours[8] == pytest.approx(3 * 1e6 / 400 / 3600)
    assert hours[20] == pytest.approx(1e6 / 100 / 3600)
    assert p["best_runs_per_program"] == 8 and p["domain_hours"] == pytest.approx(hours[8])
    assert p["table_hours"] == pytest.approx(20 * hours[8])  # 400 runs = 20 domains of 20 runs
    assert "evaluation" in p["counted"]


def test_bench_command_line():
    args = build_parser().parse_args(["bench"])
    assert args.runs is None and args.rounds == 3 and not args.precision
    args = build_parser().parse_args(["bench", "--runs", "1", "4", "--precision", "--sweep-seconds", "3"])
    assert args.runs == [1, 4] and args.precision and args.sweep_seconds == 3.0
    assert build_parser().parse_args(["bench", "--runs"]).runs == []  # no sweep
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--runs", "0"])


def test_a_batched_program_counts_each_run_as_one_run_does():
    dataset = bench.synthetic_dataset(TINY, size=200, episode_length=20, num_tasks=5)
    sweep = bench.sweep_runs(TINY, [2], updates_per_dispatch=3, min_seconds=0.01, rounds=1, dataset=dataset,
                             batching="vmap")
    (row,) = sweep["by_runs"]
    one = sweep["one_run_program"]
    assert row["flops_per_update"] == one["flops_per_update"] and "one run's own program" in row["flops_from"]
    assert row["xla_flops_per_update_as_counted"] > 0  # XLA's own count of the batch, kept beside it
    assert row["achieved_flop_per_s"] == pytest.approx(one["flops_per_update"] * row["aggregate_updates_per_s"])
