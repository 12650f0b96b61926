"""Small problems with exact answers, used by chapters 3-5.

* ``ContextualBandit``: one observation ``s`` in [-1, 1], a 2-D action, a reward made of
  Gaussian bumps whose heights depend on ``s`` (chapter 3: the expanded MDP).
* ``chain_*``: a chain of ``L`` states with a single reward of 1 on the last transition,
  whatever the action (chapter 4: horizon reduction). Its values are known in closed form.
* ``TwoStage``: a two-step 2-D task whose best path is rare in the data (chapter 5).

The helpers that read a trained agent (values and targets along virtual trajectories)
are in ``rql_lite.analysis``; none of the update math lives here.

Shapes: ``B`` batch, ``M`` modes, ``K`` flow steps, ``L`` chain length.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite import losses

# --------------------------------------------------------------------------- rewards


def bump_reward(actions, centers, heights, width: float):
    """Sum of Gaussian bumps: ``sum_m heights[..., m] * exp(-|a - c_m|^2 / (2 width^2))``.

    ``actions (B, 2)``, ``centers (M, 2)``, ``heights (M,)`` or ``(B, M)`` -> ``(B,)``.
    Works with numpy or jax arrays.
    """
    xp = jnp if isinstance(actions, jax.Array) else np
    d2 = xp.sum((actions[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    return xp.sum(heights * xp.exp(-d2 / (2.0 * width**2)), axis=-1)


def _mixture(rng: np.random.Generator, n: int, centers, probs, std: float):
    """``n`` samples of a Gaussian mixture clipped to [-1, 1]; returns ``(actions (n, 2), mode (n,))``."""
    centers = np.asarray(centers, np.float64)
    mode = rng.choice(len(probs), size=n, p=np.asarray(probs) / np.sum(probs))
    actions = centers[mode] + std * rng.standard_normal((n, centers.shape[1]))
    return np.clip(actions, -1.0, 1.0).astype(np.float32), mode


# --------------------------------------------------------------------------- chapter 3


@dataclasses.dataclass(frozen=True)
class ContextualBandit:
    """A one-step task: observe ``s in [-1, 1]``, pick ``a in [-1, 1]^2``, get ``r(s, a)``, stop.

    Mode ``m`` is a bump at ``centers[m]`` whose height moves linearly from ``heights_lo[m]``
    (at ``s = -1``) to ``heights_hi[m]`` (at ``s = +1``). The behaviour policy picks mode ``m``
    with probability ``behaviour_probs[m]`` (whatever ``s``) and adds Gaussian noise.
    """

    centers: tuple = ((-0.6, -0.6), (-0.6, 0.6), (0.6, -0.6), (0.6, 0.6))
    heights_lo: tuple = (1.0, 0.6, 0.3, 0.1)
    heights_hi: tuple = (0.1, 0.3, 0.6, 1.0)
    width: float = 0.25
    behaviour_probs: tuple = (0.25, 0.25, 0.25, 0.25)
    behaviour_std: float = 0.12

    def heights(self, s):
        """Bump heights at contexts ``s (B,)`` -> ``(B, M)``."""
        s = np.asarray(s, np.float32).reshape(-1, 1)
        lam = (1.0 + s) / 2.0
        return (1.0 - lam) * np.asarray(self.heights_lo, np.float32) + lam * np.asarray(self.heights_hi, np.float32)

    def reward(self, s, actions):
        """``r(s, a)``: ``s (B,)``, ``actions (B, 2)`` -> ``(B,)`` numpy."""
        actions = np.asarray(actions, np.float32)
        return bump_reward(actions, np.asarray(self.centers, np.float32), self.heights(s), self.width).astype(np.float32)

    def dataset(self, num: int, seed: int = 0) -> dict:
        """``num`` one-step episodes as arrays for ``rql_lite.data.from_arrays``.

        Keys: observations ``(num, 1)``, actions ``(num, 2)``, rewards ``(num,)``,
        terminals ``(num,)`` all 1, masks ``(num,)`` all 0 (no bootstrap: the target is the
        reward), next_observations ``(num, 1)`` (a copy, never used), mode ``(num,)``.
        """
        rng = np.random.default_rng(seed)
        s = rng.uniform(-1.0, 1.0, num).astype(np.float32)
        actions, mode = _mixture(rng, num, self.centers, self.behaviour_probs, self.behaviour_std)
        return dict(
            observations=s[:, None], actions=actions, rewards=self.reward(s, actions),
            terminals=np.ones(num, np.float32), masks=np.zeros(num, np.float32),
            next_observations=s[:, None].copy(), mode=mode,
        )


# --------------------------------------------------------------------------- chapter 4


def chain_values(length: int, discount: float) -> np.ndarray:
    """Exact values of the chain, ``(L,)``: ``V(s) = discount^(L-1-s)`` (reward 1 on leaving state L-1)."""
    return (discount ** np.arange(length - 1, -1, -1)).astype(np.float64)


def expanded_chain_values(length: int, discount: float, flow_steps: int) -> np.ndarray:
    """Exact values of the expanded chain, ``(L, K+1)``; flow steps carry reward 0 and discount 1,
    and the action does not matter, so ``V(s, x, k/K) = V(s)`` for every ``x`` and ``k``."""
    return np.repeat(chain_values(length, discount)[:, None], flow_steps + 1, axis=1)


def chain_obs(states, length: int) -> np.ndarray:
    """One-hot observations of chain states: ``(B,)`` ints -> ``(B, L)`` float32."""
    return np.eye(length, dtype=np.float32)[np.asarray(states)]


def chain_dataset(length: int, num_episodes: int, action_dim: int = 1, seed: int = 0) -> dict:
    """Behaviour episodes of the chain: ``0 -> 1 -> ... -> L-1 -> end``, ``L`` transitions each.

    The chain moves right whatever the action; the last transition pays 1 and is terminal.
    Actions are a two-mode mixture (+-0.5, std 0.2) so the flow policy has something to learn.
    Returns arrays of ``N = num_episodes * L`` rows: observations ``(N, L)`` one-hot, actions
    ``(N, action_dim)``, rewards/terminals/masks ``(N,)``, next_observations ``(N, L)``, state ``(N,)``.
    """
    rng = np.random.default_rng(seed)
    state = np.tile(np.arange(length), num_episodes)
    last = state == length - 1
    sign = rng.choice([-1.0, 1.0], size=(state.size, 1))
    actions = np.clip(0.5 * sign + 0.2 * rng.standard_normal((state.size, action_dim)), -1, 1)
    return dict(
        observations=chain_obs(state, length),
        actions=actions.astype(np.float32),
        rewards=last.astype(np.float32),
        terminals=last.astype(np.float32),
        masks=(~last).astype(np.float32),
        next_observations=chain_obs(np.minimum(state + 1, length - 1), length),
        state=state,
    )


def tabular_chain_errors(length: int, flow_steps: int, discount: float, agent: str,
                         num_updates: int, lr: float = 0.5, relative: bool = False) -> np.ndarray:
    """Tabular value learning on the expanded chain; ``max |V - V*|`` after each update, ``(num_updates,)``.

    ``relative=True`` gives ``max |V - V*| / V*`` instead, which compares chains of different
    lengths (on a long chain the far states' exact values are small).

    The table ``V[s, k]`` holds one value per env state and flow step (the action does not
    matter on the chain, so one cell stands for the whole virtual trajectory at that step).
    Every update moves every cell a fraction ``lr`` towards its target, built with the
    library's ``chunk_returns`` and ``rql_value_target`` / ``tfql_value_target``; the target
    table is the table before the update (synchronous, no target-network lag).
    """
    L, K = length, flow_steps
    s = jnp.repeat(jnp.arange(L), K + 1)
    k = jnp.tile(jnp.arange(K + 1), L)
    f = k / K
    rewards = (s == L - 1).astype(jnp.float32)[:, None]
    masks = (s != L - 1).astype(jnp.float32)[:, None]
    returns, bootstrap = losses.chunk_returns(rewards, masks, jnp.ones_like(masks), discount)
    exact = jnp.asarray(expanded_chain_values(L, discount, K), jnp.float32)

    def body(table, _):
        next_env_value = table[jnp.minimum(s + 1, L - 1), 0]
        if agent == "rql":
            y = losses.rql_value_target(returns, bootstrap, next_env_value)
        elif agent == "tfql":
            next_flow_value = table[s, jnp.minimum(k + 1, K)]
            y = losses.tfql_value_target(f, returns, bootstrap, next_env_value, next_flow_value)
        else:
            raise ValueError(f"agent must be 'rql' or 'tfql', got {agent!r}")
        table = table + lr * (y.reshape(L, K + 1) - table)
        gap = jnp.abs(table - exact)
        return table, jnp.max(gap / exact if relative else gap)

    _, err = jax.lax.scan(body, jnp.zeros((L, K + 1)), None, length=num_updates)
    return np.asarray(err)


def first_below(errors, threshold: float, steps=None):
    """The first step at which ``errors`` is below ``threshold`` (and stays below), or NaN."""
    errors = np.asarray(errors)
    steps = np.arange(1, errors.size + 1) if steps is None else np.asarray(steps)
    above = np.flatnonzero(errors >= threshold)
    if above.size == 0:
        return float(steps[0])
    if above[-1] == errors.size - 1:
        return float("nan")
    return float(steps[above[-1] + 1])


# --------------------------------------------------------------------------- chapter 5


@dataclasses.dataclass(frozen=True)
class TwoStage:
    """A two-step 2-D task whose best path is rare in the behaviour data.

    Step 0 (observation ``(0, 0)``): the action's sign of ``a_x`` picks a room, left (-1) or
    right (+1); reward 0. Step 1 (observation ``(1, room)``): reward ``bump_reward(a)`` with
    the room's bumps, then the episode ends. The left room holds the best bump (1.0) and a
    poor one (0.1); the behaviour policy mostly takes the poor one. The right room holds two
    bumps of 0.5. So the left room is worse *on average in the data* but better at its best:
    what a SARSA-like value (kappa=0.5) and a max-like one (kappa -> 1) disagree about.
    """

    stage0_centers: tuple = ((-0.6, 0.0), (0.6, 0.0))
    stage0_probs: tuple = (0.5, 0.5)
    left_centers: tuple = ((-0.6, 0.6), (-0.6, -0.6))
    left_heights: tuple = (1.0, 0.1)
    left_probs: tuple = (0.15, 0.85)
    right_centers: tuple = ((0.6, 0.6), (0.6, -0.6))
    right_heights: tuple = (0.5, 0.5)
    right_probs: tuple = (0.5, 0.5)
    width: float = 0.25
    behaviour_std: float = 0.12

    def room(self, a0):
        """Room entered by step-0 actions ``(B, 2)`` -> ``(B,)`` in {-1, +1}."""
        return np.where(np.asarray(a0)[:, 0] < 0.0, -1.0, 1.0).astype(np.float32)

    def stage1_reward(self, room, a1):
        """Reward of step-1 actions ``(B, 2)`` in rooms ``(B,)`` -> ``(B,)``."""
        a1 = np.asarray(a1, np.float32)
        left = bump_reward(a1, np.asarray(self.left_centers, np.float32), np.asarray(self.left_heights, np.float32), self.width)
        right = bump_reward(a1, np.asarray(self.right_centers, np.float32), np.asarray(self.right_heights, np.float32), self.width)
        return np.where(np.asarray(room) < 0, left, right).astype(np.float32)

    def on_best_bump(self, room, a1) -> np.ndarray:
        """Whether each episode entered the left room and put its step-1 action within ``width``
        of the best bump: ``room (B,)``, ``a1 (B, 2)`` -> ``(B,)`` bool."""
        near = np.linalg.norm(np.asarray(a1) - np.asarray(self.left_centers[0]), axis=1) < self.width
        return (np.asarray(room) < 0) & near

    def best_return(self, discount: float) -> float:
        """The optimal return: the 1.0 bump hit exactly at step 1."""
        return float(discount * max(self.left_heights + self.right_heights))

    def obs0(self, n: int) -> np.ndarray:
        return np.zeros((n, 2), np.float32)

    def obs1(self, room) -> np.ndarray:
        room = np.asarray(room, np.float32)
        return np.stack([np.ones_like(room), room], axis=1)

    def dataset(self, num_episodes: int, seed: int = 0) -> dict:
        """Behaviour episodes, two rows each (step 0 then step 1), for ``data.from_arrays``.

        Returns observations ``(2E, 2)``, actions ``(2E, 2)``, rewards/terminals/masks ``(2E,)``,
        next_observations ``(2E, 2)``, and ``episode_return (E,)`` (undiscounted).
        """
        rng = np.random.default_rng(seed)
        e = num_episodes
        a0, _ = _mixture(rng, e, self.stage0_centers, self.stage0_probs, self.behaviour_std)
        room = self.room(a0)
        al, _ = _mixture(rng, e, self.left_centers, self.left_probs, self.behaviour_std)
        ar, _ = _mixture(rng, e, self.right_centers, self.right_probs, self.behaviour_std)
        a1 = np.where(room[:, None] < 0, al, ar)
        r1 = self.stage1_reward(room, a1)
        o0, o1 = self.obs0(e), self.obs1(room)

        def interleave(x0, x1):
            return np.stack([x0, x1], axis=1).reshape((2 * e,) + np.shape(x0)[1:])

        return dict(
            observations=interleave(o0, o1),
            actions=interleave(a0, a1),
            rewards=interleave(np.zeros(e, np.float32), r1),
            terminals=interleave(np.zeros(e, np.float32), np.ones(e, np.float32)),
            masks=interleave(np.ones(e, np.float32), np.zeros(e, np.float32)),
            next_observations=interleave(o1, o1),
            episode_return=r1,
        )

    def rollout(self, sample, num: int, seed: int = 0, discount: float = 0.99) -> dict:
        """Run ``num`` episodes with ``sample(obs (B, 2), key) -> actions (B, 2)``.

        Returns ``a0, a1 (num, 2)``, ``room (num,)`` and ``returns (num,)`` (discounted: the
        reward comes one step late, so it is multiplied by ``discount``).
        """
        k0, k1 = jax.random.split(jax.random.PRNGKey(seed))
        a0 = np.asarray(sample(jnp.asarray(self.obs0(num)), k0))
        room = self.room(a0)
        a1 = np.asarray(sample(jnp.asarray(self.obs1(room)), k1))
        return dict(a0=a0, a1=a1, room=room, returns=discount * self.stage1_reward(room, a1))
