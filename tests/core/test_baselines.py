"""Each baseline's loss against a NumPy reference written from its equations, on a tiny batch."""
from types import SimpleNamespace

import jax
import numpy as np
import pytest

import numpy_reference as ref
from rql_lite.baselines import bc, common, fawac, fbrac, fql, ifql

CFG = SimpleNamespace(obs_dim=3, action_dim=2, horizon=2, chunk_dim=4, num_values=3, policy_hidden=(8, 8),
                      value_hidden=(8, 8), value_layer_norm=True, matmul_precision="default", flow_steps=3,
                      discount=0.9, pessimism=0.5, expectile=0.8, distill_weight=3.0, num_samples=4,
                      inv_temperature=2.0, alpha=0.5)
B = 5


def tiny_batch(seed=0):
    rng = np.random.default_rng(seed)
    valid = np.ones((B, 2), np.float32)
    valid[1, 1] = 0  # a chunk that runs past its episode's end
    masks = np.ones((B, 2), np.float32)
    masks[2, 0] = 0  # a terminal inside a chunk
    return {"observations": rng.normal(size=(B, 3)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(B, 2, 2)).astype(np.float32),
            "rewards": rng.normal(size=(B, 2)).astype(np.float32), "masks": masks, "valid": valid,
            "next_observations": rng.normal(size=(B, 3)).astype(np.float32)}


def setup(module, seed=0):
    policy, value = module.init(CFG, jax.random.PRNGKey(seed))
    target = module.critic_params(jax.tree_util.tree_map(lambda x: x * 0.9, value))  # a target unlike the online
    d = module.draws(CFG, jax.random.PRNGKey(seed + 1), B)
    batch = tiny_batch(seed)
    total, metrics = module.loss_at(CFG, {"policy": policy, "value": value}, target, batch, d)
    as_np = lambda tree: jax.tree_util.tree_map(np.asarray, tree)  # noqa: E731
    return as_np(policy), as_np(value), as_np(target), {k: np.asarray(v, np.float64) for k, v in d.items()}, batch, \
        float(total), {k: float(v) for k, v in metrics.items()}


def flat(batch):
    return batch["actions"].reshape(B, -1).astype(np.float64)


def keep(batch):
    return np.repeat(batch["valid"], 2, axis=1).astype(np.float64)


def target_from(q_next, batch):
    r, boot = ref.chunk_return_and_bootstrap(batch["rewards"], batch["masks"], batch["valid"], CFG.discount)
    return r + boot * q_next


def test_bc_flow_is_flow_matching_on_the_kept_entries():
    policy, _, _, d, batch, total, m = setup(bc)
    want = ref.bc_flow(policy, batch["observations"], flat(batch), d["x0"], d["t"], keep(batch))
    assert total == pytest.approx(want, rel=1e-4) and m["bc_loss"] == pytest.approx(want, rel=1e-4)


def test_fql_loss_matches_its_equations():
    policy, q, q_bar, d, batch, total, m = setup(fql)
    obs, a = batch["observations"], flat(batch)
    a_next = np.clip(ref.onestep(policy["onestep"], batch["next_observations"], d["next_z"]), -1, 1)
    y = target_from(ref.pessimistic(ref.critic(q_bar, batch["next_observations"], a_next), CFG.pessimism), batch)
    critic = ((ref.critic(q, obs, a) - y) ** 2).mean()
    bc_loss = ref.bc_flow(policy["flow"], obs, a, d["x0"], d["t"], keep(batch))
    student = ref.onestep(policy["onestep"], obs, d["z"])
    distill = ((student - ref.flow_sample(policy["flow"], obs, d["z"], CFG.flow_steps)) ** 2).mean()
    q_pi = ref.critic(q, obs, np.clip(student, -1, 1)).mean()
    assert m["value_loss"] == pytest.approx(critic, rel=1e-4)
    assert m["distill_loss"] == pytest.approx(distill, rel=1e-4)
    assert m["policy_loss"] == pytest.approx(-q_pi, rel=1e-4, abs=1e-6)
    assert total == pytest.approx(critic + bc_loss + CFG.distill_weight * distill - q_pi, rel=1e-4)


def test_ifql_loss_matches_its_equations():
    policy, value, q_bar, d, batch, total, m = setup(ifql)
    obs, a = batch["observations"], flat(batch)
    u = ref.pessimistic(ref.critic(q_bar, obs, a), CFG.pessimism) - ref.state_value(value["v"], obs)
    v_loss = ref.expectile(u, CFG.expectile).mean()
    y = target_from(ref.state_value(value["v"], batch["next_observations"]), batch)
    critic = ((ref.critic(value["q"], obs, a) - y) ** 2).mean()
    bc_loss = ref.bc_flow(policy, obs, a, d["x0"], d["t"], keep(batch))
    assert m["state_value_loss"] == pytest.approx(v_loss, rel=1e-4)
    assert m["value_loss"] == pytest.approx(critic, rel=1e-4)
    assert total == pytest.approx(v_loss + critic + bc_loss, rel=1e-4)


def test_fawac_loss_matches_its_equations():
    policy, value, q_bar, d, batch, total, m = setup(fawac)
    obs, a = batch["observations"], flat(batch)
    a_next = ref.flow_sample(policy, batch["next_observations"], d["next_z"], CFG.flow_steps)
    y = target_from(ref.pessimistic(ref.critic(q_bar, batch["next_observations"], a_next), CFG.pessimism), batch)
    critic = ((ref.critic(value["q"], obs, a) - y) ** 2).mean()
    v = ref.state_value(value["v"], obs)
    v_loss = ((ref.critic(q_bar, obs, a) - v[None]) ** 2).mean()
    w = np.minimum(np.exp(CFG.inv_temperature * (ref.critic(value["q"], obs, a).mean(0) - v)), 100.0)
    x_t = (1 - d["t"][:, None]) * d["x0"] + d["t"][:, None] * a
    err = (ref.velocity(policy, obs, x_t, d["t"]) - (a - d["x0"])) ** 2 * keep(batch)
    weighted = (w[:, None] * err).sum() / keep(batch).sum()
    assert m["value_loss"] == pytest.approx(critic, rel=1e-4)
    assert m["state_value_loss"] == pytest.approx(v_loss, rel=1e-4)
    assert m["weight_mean"] == pytest.approx(w.mean(), rel=1e-4)
    assert total == pytest.approx(critic + v_loss + weighted, rel=1e-4)


def test_fbrac_loss_matches_its_equations():
    policy, q, q_bar, d, batch, total, m = setup(fbrac)
    obs, a = batch["observations"], flat(batch)
    a_next = ref.flow_sample(policy, batch["next_observations"], d["next_z"], CFG.flow_steps)
    y = target_from(ref.pessimistic(ref.critic(q_bar, batch["next_observations"], a_next), CFG.pessimism), batch)
    critic = ((ref.critic(q, obs, a) - y) ** 2).mean()
    bc_loss = ref.bc_flow(policy, obs, a, d["x0"], d["t"], keep(batch))
    q_pi = ref.critic(q, obs, ref.flow_sample(policy, obs, d["z"], CFG.flow_steps)).mean()
    assert m["value_loss"] == pytest.approx(critic, rel=1e-4)
    assert total == pytest.approx(critic + bc_loss - q_pi / CFG.alpha, rel=1e-4)


def test_ifql_acts_with_the_sample_its_lowest_critic_head_scores_best():
    policy, value = ifql.init(CFG, jax.random.PRNGKey(3))
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    key = jax.random.PRNGKey(7)
    chosen = np.asarray(ifql.act_with(CFG, policy, value, obs, key))
    z = np.asarray(jax.random.normal(key, (CFG.num_samples, 6, CFG.chunk_dim)))
    as_np = jax.tree_util.tree_map(np.asarray, (policy, value))
    candidates = np.stack([ref.flow_sample(as_np[0], obs, z[i], CFG.flow_steps) for i in range(CFG.num_samples)])
    scores = np.stack([ref.critic(as_np[1]["q"], obs, c).min(0) for c in candidates])
    want = candidates[scores.argmax(0), np.arange(6)]
    np.testing.assert_allclose(chosen, want, rtol=1e-4, atol=1e-5)


def test_fbrac_gradient_reaches_the_flow_through_every_step_and_fql_keeps_the_flow_out_of_the_value():
    """FBRAC's critic term moves the flow's parameters (through K Euler steps); FQL's does not: its
    value gradient stops at the one-step policy."""
    batch = tiny_batch(1)
    for module, reaches_flow in ((fbrac, True), (fql, False)):
        policy, value = module.init(CFG, jax.random.PRNGKey(0))
        target = module.critic_params(value)
        d = module.draws(CFG, jax.random.PRNGKey(1), B)

        def policy_term(p):
            return module.loss_at(CFG, {"policy": p, "value": value}, target, batch, d)[1]["policy_loss"]

        grads = jax.grad(policy_term)(policy)
        flow_grads = grads if module is fbrac else grads["flow"]
        norm = float(sum(np.sum(np.square(np.asarray(g))) for g in jax.tree_util.tree_leaves(flow_grads)))
        assert (norm > 0) == reaches_flow, (module.__name__, norm)


# --------------------------------------------------------------------------- learning on a small offline problem

def one_step_data(actions, reward):
    """A one-step offline dataset (constant observation, every episode ends after one action)."""
    from rql_lite import data

    n = len(actions)
    obs = np.zeros((n, 1), np.float32)
    return data.from_arrays(obs, actions, reward(actions), np.ones(n, np.float32), np.zeros(n, np.float32), obs)


def rare_good_mode(a):
    """A bump of height 0.2 at a = -0.5 and one of height 1 at a = +0.5."""
    return (np.where(a[:, 0] > 0, 1.0, 0.2) * np.exp(-((np.abs(a[:, 0]) - 0.5) ** 2) / 0.08)).astype(np.float32)


@pytest.fixture(scope="module")
def rare_mode_dataset():
    """90% of the data at the poor bump, 10% at the good one: imitation stays poor, RL should move."""
    rng = np.random.default_rng(0)
    good = rng.uniform(size=4000) < 0.1
    actions = np.clip(np.where(good, 0.5, -0.5) + 0.1 * rng.standard_normal(4000), -1, 1).astype(np.float32)[:, None]
    return one_step_data(actions, rare_good_mode)


KNOBS = {"rql": dict(alpha=0.1), "tfql": dict(alpha=0.1), "bc": {}, "fql": dict(distill_weight=1.0),
         "ifql": dict(expectile=0.9), "fawac": dict(inv_temperature=3.0), "fbrac": dict(alpha=10.0)}


def trained(agent, dataset, steps=2000, **changes):
    from rql_lite import train
    from rql_lite.agent import AgentConfig

    config = AgentConfig(obs_dim=1, action_dim=1, horizon=1, flow_steps=4, num_values=2, policy_hidden=(32, 32),
                         value_hidden=(32, 32), batch_size=128, learning_rate=1e-3, pessimism=0.0, tau=0.05,
                         ema_rate=0.9 if agent in ("rql", "tfql", "bc") else 0.0, agent=agent,
                         **{**KNOBS[agent], **changes})
    states, history = train.train(config, dataset, seeds=[0], num_steps=steps, steps_per_dispatch=steps, progress=False)
    assert all(np.isfinite(np.asarray(v)).all() for v in history[-1].values())
    return train.unstack(states, 0)


def actions_of(state, n=500):
    from rql_lite.agent import act

    return np.asarray(act(state, np.zeros((n, 1), np.float32), jax.random.PRNGKey(5)))[:, 0, 0]


@pytest.fixture(scope="module")
def bc_good_share(rare_mode_dataset):
    return float(np.mean(actions_of(trained("bc", rare_mode_dataset)) > 0))


def test_bc_flow_imitates_the_rare_mode_at_its_rate(bc_good_share):
    assert 0.02 < bc_good_share < 0.2  # the data's 10%


@pytest.mark.parametrize("agent", ["rql", "tfql", "fql", "fawac"])
def test_value_guided_agents_move_to_the_rare_good_mode(agent, rare_mode_dataset, bc_good_share):
    """RQL and TFQL (value over partial actions), FQL (distilled one-step policy on the critic) and FAWAC
    (advantage-weighted imitation: the good mode is in the data, so reweighting can reach it)."""
    share = float(np.mean(actions_of(trained(agent, rare_mode_dataset)) > 0))
    assert share > bc_good_share + 0.25, (agent, share, bc_good_share)


def test_ifql_needs_many_samples(rare_mode_dataset, bc_good_share):
    """The paper: rejection sampling is zeroth-order and needs many samples. With one sample IFQL acts like
    BC flow; with 32 it mostly picks the rare good mode. One training, two acting budgets."""
    state = trained("ifql", rare_mode_dataset)
    one = float(np.mean(actions_of(state.replace(config=state.config.replace(num_samples=1))) > 0))
    many = float(np.mean(actions_of(state.replace(config=state.config.replace(num_samples=32))) > 0))
    assert one < bc_good_share + 0.15 and many > one + 0.3, (one, many)


def test_fbrac_climbs_the_critic_where_the_slope_leads():
    """The paper: backpropagating through the whole flow is unstable and worse as K grows (measured in the
    book's chapter on the other methods). Here: on one mode whose reward grows to the right, the critic's
    gradient, passed back through every Euler step, moves FBRAC's actions right of the data."""
    rng = np.random.default_rng(1)
    actions = np.clip(-0.3 + 0.1 * rng.standard_normal(4000), -1, 1).astype(np.float32)[:, None]
    state = trained("fbrac", one_step_data(actions, lambda a: (0.5 + 0.5 * a[:, 0]).astype(np.float32)), alpha=0.1)
    assert float(np.mean(actions_of(state))) > float(actions.mean()) + 0.2
