"""The precision study's pieces at tiny size (rql_lite.bench.precision): cost and learning at each precision."""
from rql_lite.agent import AgentConfig
from rql_lite.bench import precision as study
from rql_lite.bench.throughput import synthetic_dataset

TINY = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(8,), value_hidden=(8,), num_values=2,
                   batch_size=4, flow_steps=2)


def test_the_precision_study_pieces_run_at_tiny_size():
    dataset = synthetic_dataset(TINY, size=200, episode_length=20)
    cost = study.precision_cost(TINY, ("default", "bfloat16"), updates_per_dispatch=2, min_seconds=0.01, rounds=1,
                                dataset=dataset)
    assert cost["default"]["ratio_to_default"] == 1.0 and cost["bfloat16"]["updates_per_s"] > 0
    learning = study.precision_learning(("default", "bfloat16"), seeds=(0, 1), steps=4, episodes=50, eval_episodes=20)
    for precision in ("default", "bfloat16"):
        res = learning["results"][precision]
        assert len(res["mean_return"]) == 2 and all(0.0 <= x <= 1.0 for x in res["on_best_bump"])
        assert all(v >= 0.0 for v in res["value_error_step1"])
