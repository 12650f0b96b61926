"""The roads not taken: small problems that show where each family of flow-RL methods stops, and
the measurements the chapter of that name makes on trained agents.

Problems (``OneStepBandit``: one state, one action, the episode ends; a reward made of Gaussian
bumps; behaviour data drawn from a mixture of modes):

* ``between_modes()``: a 1-D action, the data in two modes, the best action between them. A method
  that only reweights the data (weighted regression) can move probability from one mode to the
  other; only a method that follows the value's slope can reach the point between them.

Measurements on trained agents (all read agents through ``rql_lite.agent`` and
``rql_lite.baselines``; none of the update math lives here):

* ``critic_term_gradient_norms``: per sample, the norm of the gradient of FBRAC's critic term
  ``mean_heads Q(s, flow(s, z))`` with respect to the flow's parameters, backpropagated through
  all K Euler steps;
* ``network_calls_per_action`` and ``seconds_per_action``: what one action costs each method;
* ``mode_shares``, ``reach`` and ``room_mode_shares``: where a policy puts its actions (the last on
  chapter 5's ``TwoStage``, whose right room holds two bumps of equal value: the flow can keep both; a
  one-step policy distilled from it maps noise to actions with one network call and must cross from
  one to the other somewhere in noise space);
* ``two_stage_episodes``: returns on chapter 5's ``TwoStage`` task;
* ``diverged``: whether a training history left the finite, bounded range.

``toy_config`` holds the settings every run of the chapter shares; ``train_seeds`` trains one
configuration over several seeds in one program.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rql_lite import data, train
from rql_lite.agent import EXPANDED, METHOD_NAMES, AgentConfig, TrainState, act
from rql_lite.baselines import common
from rql_lite.teaching.toy_mdp import bump_reward

# Each method's main knob: (AgentConfig field, what it does). BC flow has none.
KNOBS = {
    "rql": ("alpha", "weight of the BC term"),
    "tfql": ("alpha", "weight of the BC term"),
    "fql": ("distill_weight", "weight of distilling the flow into the one-step policy"),
    "ifql": ("expectile", "expectile of the state value V(s)"),
    "fawac": ("inv_temperature", "beta in the weight exp(beta * advantage)"),
    "fbrac": ("alpha", "BC weight; the critic term is divided by it"),
}


def toy_config(agent: str, obs_dim: int, action_dim: int, **changes) -> AgentConfig:
    """The chapter's shared settings for ``agent`` on a toy: K = 10 flow steps, two 64-unit hidden
    layers, two value heads, batch 256, pessimism 0, target rate 0.05 (chapter 5's), one-step chunks.

    The EMA policy (rate 0.99, chapter 5's) for RQL, TFQL and BC flow; none for FQL, IFQL, FAWAC and
    FBRAC, whose reference implementations act with the online policy. ``changes`` override any field.
    """
    settings = dict(obs_dim=obs_dim, action_dim=action_dim, horizon=1, flow_steps=10, num_values=2,
                    policy_hidden=(64, 64), value_hidden=(64, 64), batch_size=256, discount=0.99,
                    pessimism=0.0, tau=0.05, expectile=0.9,
                    ema_rate=0.99 if agent in EXPANDED + ("bc",) else 0.0, agent=agent)
    return AgentConfig(**{**settings, **changes})


# --------------------------------------------------------------------------- problems


@dataclasses.dataclass(frozen=True)
class OneStepBandit:
    """One state (observation 0), one action in [-1, 1]^d, then the episode ends.

    Reward: ``sum_m reward_heights[m] * exp(-|a - reward_centers[m]|^2 / (2 reward_width^2))``.
    Behaviour: mode ``m`` with probability ``data_probs[m]``, Gaussian noise of ``data_std``, clipped.
    """

    data_centers: tuple
    data_probs: tuple
    data_std: float
    reward_centers: tuple
    reward_heights: tuple
    reward_width: float

    @property
    def action_dim(self) -> int:
        return len(self.data_centers[0])

    def reward(self, actions) -> np.ndarray:
        """``actions (B, d)`` -> ``(B,)``."""
        actions = np.asarray(actions, np.float32).reshape(-1, self.action_dim)
        return bump_reward(actions, np.asarray(self.reward_centers, np.float32),
                           np.asarray(self.reward_heights, np.float32), self.reward_width).astype(np.float32)

    def best_action(self, grid: int = 2001) -> np.ndarray:
        """The reward's maximiser over [-1, 1]^d (on a grid for d = 1, among the bump centres otherwise)."""
        if self.action_dim == 1:
            a = np.linspace(-1, 1, grid, dtype=np.float32)[:, None]
        else:
            a = np.asarray(self.reward_centers, np.float32)
        return a[int(np.argmax(self.reward(a)))]

    def best_reward(self) -> float:
        return float(self.reward(self.best_action()[None])[0])

    def actions(self, num: int, seed: int = 0) -> np.ndarray:
        """``num`` behaviour actions, ``(num, d)``."""
        rng = np.random.default_rng(seed)
        centers = np.asarray(self.data_centers, np.float64)
        mode = rng.choice(len(centers), size=num, p=np.asarray(self.data_probs) / np.sum(self.data_probs))
        a = centers[mode] + self.data_std * rng.standard_normal((num, self.action_dim))
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def dataset(self, num: int, seed: int = 0) -> dict:
        """``num`` one-step episodes as arrays for ``rql_lite.data.from_arrays`` (every mask 0: no bootstrap)."""
        a = self.actions(num, seed)
        obs = np.zeros((num, 1), np.float32)
        ones = np.ones(num, np.float32)
        return dict(observations=obs, actions=a, rewards=self.reward(a), terminals=ones, masks=0 * ones,
                    next_observations=obs)

    def chunk_dataset(self, num: int, seed: int = 0) -> data.ChunkDataset:
        """``dataset(num, seed)`` as the ``ChunkDataset`` that ``train.train`` reads."""
        d = self.dataset(num, seed)
        return data.from_arrays(d["observations"], d["actions"], d["rewards"], d["terminals"], d["masks"],
                                d["next_observations"])


def between_modes() -> OneStepBandit:
    """1-D: data at -0.5 and +0.5 (half each, std 0.1); one reward bump of height 1 at +0.15."""
    return OneStepBandit(data_centers=((-0.5,), (0.5,)), data_probs=(0.5, 0.5), data_std=0.1,
                         reward_centers=((0.15,),), reward_heights=(1.0,), reward_width=0.25)


# --------------------------------------------------------------------------- where a policy acts


def policy_actions(state: TrainState, obs, num: int, seed: int = 0) -> np.ndarray:
    """``num`` actions of ``state``'s policy at one observation ``obs (obs_dim,)``: ``(num, action_dim)``
    (the first step of each chunk)."""
    obs = np.broadcast_to(np.asarray(obs, np.float32), (num, state.config.obs_dim))
    return np.asarray(act(state, obs, jax.random.PRNGKey(seed)))[:, 0]


def mode_shares(actions, centers, radius: float) -> dict:
    """Which mode each action is near: within ``radius`` of centre ``m`` (the nearest one), or of none.

    Returns ``shares (M,)`` (fraction of actions near each centre), ``between`` (fraction near none),
    ``covered`` (the number of centres holding at least a quarter of an even share, ``0.25 / M``).
    """
    actions, centers = np.asarray(actions, np.float64), np.asarray(centers, np.float64)
    d = np.linalg.norm(actions[:, None, :] - centers[None], axis=-1)
    nearest = np.argmin(d, axis=1)
    near = d[np.arange(len(actions)), nearest] < radius
    shares = np.array([np.mean(near & (nearest == m)) for m in range(len(centers))])
    return dict(shares=shares, between=float(np.mean(~near)), covered=int(np.sum(shares >= 0.25 / len(centers))))


def reach(actions, bandit: OneStepBandit, radius: float = 0.1) -> dict:
    """Mean reward of ``actions`` on ``bandit``, the fraction within ``radius`` of its best action, and
    the fraction outside the data (farther than three data standard deviations from every data mode)."""
    actions = np.asarray(actions, np.float64).reshape(-1, bandit.action_dim)
    best = np.linalg.norm(actions - bandit.best_action()[None], axis=1) < radius
    far = mode_shares(actions, bandit.data_centers, 3 * bandit.data_std)["between"]
    return dict(reward=float(bandit.reward(actions).mean()), at_best=float(best.mean()), off_data=far)


def room_mode_shares(state: TrainState, task, room: float, num: int, seed: int = 0) -> dict:
    """``mode_shares`` of ``num`` step-1 actions of ``state``'s policy in ``room`` (-1 left, +1 right) of
    chapter 5's ``TwoStage``, against that room's bump centres with the task's bump width as radius."""
    centers = task.left_centers if room < 0 else task.right_centers
    actions = policy_actions(state, task.obs1(np.array([room]))[0], num, seed)
    return mode_shares(actions, centers, task.width)


def two_stage_episodes(state: TrainState, task, episodes: int, seed: int = 0, discount: float = 0.99) -> dict:
    """``episodes`` episodes of ``state``'s policy on ``TwoStage`` (chapter 5): the mean discounted
    return, the share entering the left room and the share ending on the best bump."""
    ro = task.rollout(lambda obs, k: act(state, obs, k)[:, 0], episodes, seed=seed, discount=discount)
    return dict(ret=float(ro["returns"].mean()), left=float(np.mean(ro["room"] < 0)),
                best=float(task.on_best_bump(ro["room"], ro["a1"]).mean()), rollout=ro)


def with_samples(state: TrainState, num_samples: int) -> TrainState:
    """The same agent acting with ``num_samples`` candidates (IFQL's N; acting only, training is unchanged)."""
    return state.replace(config=state.config.replace(num_samples=num_samples))


# --------------------------------------------------------------------------- training over seeds


def train_seeds(config: AgentConfig, dataset, seeds, steps: int) -> tuple[list, list, float]:
    """``config`` trained on ``dataset`` for ``steps`` updates from each of ``seeds``, all seeds in one
    program (``train.train``, one dispatch). Returns the per-seed states, the history and the wall time
    in seconds (compilation included)."""
    tick = time.perf_counter()
    states, history = train.train(config, dataset, seeds=list(seeds), num_steps=steps, steps_per_dispatch=steps,
                                  progress=False)
    jax.block_until_ready(states)
    seconds = time.perf_counter() - tick
    return [train.unstack(states, i) for i in range(len(seeds))], history, seconds


# --------------------------------------------------------------------------- backpropagation through the flow


@functools.partial(jax.jit, static_argnums=0)
def _critic_term_gradient_norms(config, policy_params, critic_params, obs, z):
    def critic_term(params, o, zz):
        a = common.flow_actions(config, params, o[None], zz[None])
        return jnp.mean(common.critic_net(config).apply(critic_params, o[None], a))

    per_sample = jax.vmap(lambda o, zz: optax.tree.norm(jax.grad(critic_term)(policy_params, o, zz)))(obs, z)
    batch = jax.grad(lambda p: jnp.mean(jax.vmap(lambda o, zz: critic_term(p, o, zz))(obs, z)))(policy_params)
    return per_sample, optax.tree.norm(batch)


def critic_term_gradient_norms(config: AgentConfig, policy_params, critic_params, obs, z) -> tuple[np.ndarray, float]:
    """FBRAC's critic term ``mean_heads Q(s, flow_theta(s, z))``, differentiated with respect to the
    flow's parameters ``theta`` through all ``config.flow_steps`` Euler steps (and the final clip).

    ``obs (B, obs_dim)``, ``z (B, D)``. Returns the norm of each sample's gradient ``(B,)`` and the norm
    of the batch's mean gradient (what one update of the critic term applies, before ``1 / alpha``).
    """
    per_sample, batch = _critic_term_gradient_norms(config, policy_params, critic_params, jnp.asarray(obs, jnp.float32),
                                                    jnp.asarray(z, jnp.float32))
    return np.asarray(per_sample), float(batch)


# --------------------------------------------------------------------------- cost of an action


def network_calls_per_action(config: AgentConfig) -> dict:
    """Network evaluations one action (chunk) costs: ``policy`` (velocity-field or one-step-policy
    calls), ``critic`` (critic-ensemble calls) and their ``total``.

    RQL, TFQL, BC flow, FAWAC, FBRAC: K flow steps. FQL: one call of its one-step policy. IFQL: N
    flows of K steps and N critic calls to pick among them."""
    k, n = config.flow_steps, config.num_samples
    policy, critic = {"fql": (1, 0), "ifql": (n * k, n)}.get(config.agent, (k, 0))
    return dict(policy=policy, critic=critic, total=policy + critic)


def seconds_per_action(state: TrainState, num_obs: int = 256, repeats: int = 20, seed: int = 0) -> float:
    """Wall time of one action, the median over ``repeats`` timed calls of ``act`` on ``num_obs``
    observations at once (compiled before timing), divided by ``num_obs``."""
    obs = jnp.zeros((num_obs, state.config.obs_dim), jnp.float32)
    key = jax.random.PRNGKey(seed)
    jax.block_until_ready(act(state, obs, key))
    times = []
    for i in range(repeats):
        tick = time.perf_counter()
        jax.block_until_ready(act(state, obs, jax.random.fold_in(key, i)))
        times.append(time.perf_counter() - tick)
    return float(np.median(times)) / num_obs


# --------------------------------------------------------------------------- training health


def diverged(history: list, bound: float = 100.0) -> np.ndarray:
    """Per seed, whether any logged loss or value mean of a ``train.train`` history was not finite or
    exceeded ``bound`` in size: ``(num_seeds,)`` bool."""
    out = None
    for entry in history:
        for name, value in entry.items():
            if name in ("step", "wall_s"):
                continue
            v = np.asarray(value, np.float64)
            bad = ~np.isfinite(v) | (np.abs(v) > bound)
            out = bad if out is None else out | bad
    return np.zeros(0, bool) if out is None else out


__all__ = ["KNOBS", "METHOD_NAMES", "OneStepBandit", "between_modes", "critic_term_gradient_norms", "diverged",
           "mode_shares", "network_calls_per_action", "policy_actions", "reach", "room_mode_shares", "seconds_per_action",
           "toy_config", "train_seeds", "two_stage_episodes", "with_samples"]
