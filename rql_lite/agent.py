"""The agent: configuration, train state (a pytree), one pure update, acting.

The whole update is one pure function of ``(state, batch, key)``. It computes one scalar loss
whose terms each move only their own network (``stop_gradient`` isolates them), and takes one
Adam step on all networks together, as the authors' release does. For RQL that loss is
``value_loss + policy_loss + alpha * bc_loss`` (below); ``agent="tfql"`` changes only the value
target. The other ways to train a flow policy with RL that the RQL paper compares against (BC flow,
FQL, IFQL, FAWAC, FBRAC) write their losses in ``rql_lite.baselines``, one module each, and share
this file's state, update and acting.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rql_lite import checks, losses
from rql_lite.baselines import bc, fawac, fbrac, fql, ifql
from rql_lite.flow import euler, interpolate, reverse_to_flow_times, velocity_regression_loss
from rql_lite.networks import MATMUL_PRECISIONS, ValueEnsemble, VelocityField

EXPANDED = ("rql", "tfql")  # a value over partial actions V(s, x, f): the expanded MDP
BASELINES = {"bc": bc, "fql": fql, "ifql": ifql, "fawac": fawac, "fbrac": fbrac}  # a critic Q(s, a) (or none)
AGENTS = EXPANDED + tuple(BASELINES)
METHOD_NAMES = {"rql": "RQL", "tfql": "TFQL", "bc": "BC flow", "fql": "FQL", "ifql": "IFQL", "fawac": "FAWAC",
                "fbrac": "FBRAC"}
POLICY_LOSSES = ("release", "paper")
FLOW_TIME_MODES = ("mixed", "grid")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Every hyperparameter of the agent; defaults are the paper's (Appendix C)."""

    obs_dim: int
    action_dim: int  # per environment step; the policy emits horizon * action_dim numbers
    horizon: int = 1  # action-chunk length h
    flow_steps: int = 10  # K
    num_values: int = 10  # ensemble size N
    policy_hidden: tuple[int, ...] = (512, 512, 512, 512)
    value_hidden: tuple[int, ...] = (512, 512, 512, 512)
    value_layer_norm: bool = True
    batch_size: int = 256
    learning_rate: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005  # target-network Polyak rate
    ema_rate: float = 0.999  # policy EMA used for acting
    alpha: float = 1.0  # BC coefficient (RQL, TFQL: alpha * BC; FBRAC: BC + Q / alpha, its reference's form)
    expectile: float = 0.9  # kappa (RQL, TFQL: the value's expectile; IFQL: V(s)'s expectile of Q)
    pessimism: float = 0.5  # rho in mean - rho * std
    agent: str = "rql"  # "rql" (multi-step target), "tfql" (one-step along flow steps), or a baseline (AGENTS)
    distill_weight: float = 100.0  # FQL: weight of distilling the flow into the one-step policy
    num_samples: int = 32  # IFQL: flow samples per action, the best by the critic kept (rejection sampling)
    inv_temperature: float = 10.0  # FAWAC: beta in the weight exp(beta * advantage)
    policy_loss: str = "release"  # "release": interpolants; "paper": reversed points
    flow_time_mode: str = "mixed"  # "mixed" (release) or "grid" (paper)
    # How the networks' matrix products are computed (``networks.dense_options``): "default" (XLA's
    # default for float32), "float32", "tensorfloat32" or "bfloat16" (bfloat16 operands, float32
    # accumulation and parameters). The default stays "default" because it is what the authors'
    # release ran with: it sets no precision anywhere, so its float32 products ran at XLA's default,
    # which on NVIDIA Ampere and later GPUs is TF32 and on CPU float32. A config without this field
    # (an older run or checkpoint) loads as "default", which is what it ran with.
    matmul_precision: str = "default"

    def __post_init__(self):
        for name in ("policy_hidden", "value_hidden"):
            widths = getattr(self, name)
            widths = (widths,) if checks.is_int(widths) else tuple(widths)
            object.__setattr__(self, name, tuple(checks.check_int(w, f"{name} widths", 1) for w in widths))
        hints = {"flow_steps": "K, the number of Euler steps", "horizon": "h, the action-chunk length"}
        hints["num_samples"] = "N, IFQL's flow samples per action"
        for name in ("obs_dim", "action_dim", "horizon", "flow_steps", "num_values", "batch_size", "num_samples"):
            checks.check_int(getattr(self, name), name, 1, hint=hints.get(name, ""))
        for field in dataclasses.fields(self):  # annotations are strings here (postponed evaluation)
            value = getattr(self, field.name)
            if field.type == "float":
                checks.check_number(value, field.name)
            if field.type == "bool" and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{field.name} must be True or False, got {value!r}")
        checks.check_number(self.expectile, "expectile", above=0.0, below=1.0, hint="kappa",
                            note="0.5 is SARSA-like, 0.9 is close to max")
        checks.check_number(self.alpha, "alpha", minimum=0.0, hint="BC coefficient")
        if self.agent == "fbrac":  # its critic term is divided by alpha
            checks.check_number(self.alpha, "alpha", above=0.0, hint="FBRAC's BC coefficient, the critic term's divisor")
        checks.check_number(self.distill_weight, "distill_weight", minimum=0.0, hint="FQL's distillation weight")
        checks.check_number(self.inv_temperature, "inv_temperature", minimum=0.0, hint="FAWAC's beta")
        checks.check_number(self.pessimism, "pessimism", minimum=0.0, hint="rho")
        for name in ("discount", "tau", "ema_rate"):
            checks.check_number(getattr(self, name), name, 0.0, 1.0)
        checks.check_number(self.learning_rate, "learning_rate", above=0.0)
        for name, allowed in (("agent", AGENTS), ("policy_loss", POLICY_LOSSES), ("flow_time_mode", FLOW_TIME_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS} ('default': XLA's default, what the "
                             f"authors' release ran with), got {self.matmul_precision!r}")

    @property
    def chunk_dim(self) -> int:
        """The number of outputs of the policy, ``horizon * action_dim``."""
        return self.horizon * self.action_dim

    def replace(self, **changes) -> "AgentConfig":
        return dataclasses.replace(self, **changes)


def config_dict(config: AgentConfig) -> dict:
    """``config`` as stored in JSON (run.json, checkpoints, agent files, records): every field, tuples
    as lists. ``AgentConfig(**config_dict(config)) == config``."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def complete_config_dict(config: dict) -> dict:
    """A stored config with each ``AgentConfig`` field it lacks set to its default, in ``config_dict``'s
    form. A file written before a field existed ran with that field's default (e.g.
    ``matmul_precision="default"``), so compare stored configs through this."""
    out = dict(config)
    for field in dataclasses.fields(AgentConfig):
        if field.name not in out and field.default is not dataclasses.MISSING:
            out[field.name] = list(field.default) if isinstance(field.default, tuple) else field.default
    return out


def policy_net(config: AgentConfig) -> VelocityField:
    return VelocityField(action_dim=config.chunk_dim, hidden_dims=config.policy_hidden,
                         matmul_precision=config.matmul_precision)


def value_net(config: AgentConfig) -> ValueEnsemble:
    return ValueEnsemble(num_heads=config.num_values, hidden_dims=config.value_hidden, layer_norm=config.value_layer_norm,
                         matmul_precision=config.matmul_precision)


def optimizer(config: AgentConfig) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree (config is static metadata)."""

    step: jax.Array
    policy_params: Any
    value_params: Any
    target_value_params: Any
    ema_policy_params: Any
    opt_state: Any
    config: AgentConfig = flax.struct.field(pytree_node=False)


def critic_params(config: AgentConfig, value_params):
    """The part of the value parameters that the target network tracks: RQL's whole ensemble
    ``V(s, x, f)``, a baseline's critic ``Q(s, a)`` (not IFQL's or FAWAC's ``V(s)``), BC's nothing."""
    return value_params if config.agent in EXPANDED else BASELINES[config.agent].critic_params(value_params)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(config: AgentConfig, key: jax.Array):
    if config.agent in EXPANDED:
        k_pi, k_v = jax.random.split(key)
        obs = jnp.zeros((1, config.obs_dim))
        x = jnp.zeros((1, config.chunk_dim))
        t = jnp.zeros((1, 1))
        policy_params = policy_net(config).init(k_pi, obs, x, t)
        value_params = value_net(config).init(k_v, obs, x, t)
    else:
        policy_params, value_params = BASELINES[config.agent].init(config, key)
    return policy_params, value_params, optimizer(config).init({"policy": policy_params, "value": value_params})


def init_state(config: AgentConfig, key: jax.Array) -> TrainState:
    """Fresh parameters; target and EMA copies start equal to the online ones."""
    # Under jit: one compiled program instead of Flax's eager, operation-by-operation init.
    policy_params, value_params, opt_state = _init_params(config, key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        policy_params=policy_params,
        value_params=value_params,
        # Copies, not aliases: each leaf gets its own buffer so a training step may donate them all.
        target_value_params=jax.tree_util.tree_map(jnp.copy, critic_params(config, value_params)),
        ema_policy_params=jax.tree_util.tree_map(jnp.copy, policy_params),
        opt_state=opt_state,
        config=config,
    )


BATCH_KEYS = ("observations", "actions", "rewards", "masks", "valid", "next_observations")


def batch_shapes(config: AgentConfig, batch_size: int) -> dict[str, tuple[int, ...]]:
    """The shape each batch entry must have."""
    b, h = batch_size, config.horizon
    return {
        "observations": (b, config.obs_dim),
        "actions": (b, h, config.action_dim),
        "rewards": (b, h),
        "masks": (b, h),
        "valid": (b, h),
        "next_observations": (b, config.obs_dim),
    }


def check_batch(config: AgentConfig, batch: dict, check_values: bool = True) -> None:
    """Raise ``ValueError`` naming the first problem with a batch: missing key, shape, NaN/inf."""
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch is missing {missing}; a batch needs {list(BATCH_KEYS)} (see rql_lite.data.sample_chunks)")
    b = np.shape(batch["observations"])[0] if np.ndim(batch["observations"]) else -1
    for name, shape in batch_shapes(config, b).items():
        got = tuple(np.shape(batch[name]))
        if got != shape:
            raise ValueError(
                f"batch[{name!r}] has shape {got} but the config (obs_dim={config.obs_dim}, "
                f"action_dim={config.action_dim}, horizon={config.horizon}) needs {shape}"
            )
    if check_values:
        for name in BATCH_KEYS:
            value = batch[name]
            if isinstance(value, jax.core.Tracer):
                continue
            finite = np.isfinite(np.asarray(value))
            if not finite.all():
                first = tuple(int(i) for i in np.argwhere(~finite)[0])
                raise ValueError(f"batch[{name!r}] holds NaN or inf (first at index {first}); clean the dataset before training")


def reverse_to(config: AgentConfig, policy_params, obs: jax.Array, actions: jax.Array, flow_time: jax.Array) -> jax.Array:
    """Reverse the policy's flow from dataset action chunks to flow times ``f``.

    ``actions``: ``(B, h*d)`` (the point at f = 1), the dataset's actions as they are: not clipped first
    (the release clips them to within 1e-5 of [-1, 1]; the Fidelity page measures what that changes);
    ``flow_time``: ``(B,)``. Velocity at the current
    (later) time of each step. ``flow_time_mode="mixed"`` (the release): K Euler steps of size
    ``(1 - f) / K`` for any f. ``"grid"`` (the paper): f = k/K is reached by K - k steps of size
    1/K, so ``x^f`` is a point of the K-step path. Returns ``x^f``, ``(B, h*d)``.
    """
    policy = policy_net(config)
    velocity = lambda x, t: policy.apply(policy_params, obs, x, t)  # noqa: E731
    return reverse_to_flow_times(velocity, actions, flow_time, config.flow_steps, config.flow_time_mode)


def value_targets_at(config: AgentConfig, policy_params, target_value_params, batch: dict, flow_time: jax.Array,
                     next_noise: jax.Array, agent: str | None = None) -> dict:
    """The value's training points and their targets, for given flow times and next-step noise.

    Reverses each dataset chunk to ``x^f`` with ``policy_params`` (``reverse_to``) and builds the
    target from the target ensemble: RQL's multi-step target, or TFQL's one-step target along the
    expanded MDP. ``flow_time (B,)``; ``next_noise (B, h*d)`` is the ``z`` at which the next
    environment step's value ``V_bar(s_{t+h}, z, 0)`` is read. ``agent`` defaults to the config's.

    Returns ``flow_time (B,)``, ``x_f (B, h*d)``, ``target (B,)``, ``returns (B,)``, ``bootstrap (B,)``,
    ``next_env_value (B,)``. No gradient flows through any output.
    """
    cfg, agent = config, config.agent if agent is None else agent
    policy_params = jax.lax.stop_gradient(policy_params)
    policy, value = policy_net(cfg), value_net(cfg)
    obs, next_obs = batch["observations"], batch["next_observations"]
    b = obs.shape[0]
    actions = batch["actions"].reshape(b, cfg.chunk_dim)

    x_f = reverse_to(cfg, policy_params, obs, actions, flow_time)
    returns, bootstrap = losses.chunk_returns(batch["rewards"], batch["masks"], batch["valid"], cfg.discount)
    next_env_value = losses.aggregate_ensemble(
        value.apply(target_value_params, next_obs, next_noise, jnp.zeros((b,))), cfg.pessimism
    )
    if agent == "rql":
        target = losses.rql_value_target(returns, bootstrap, next_env_value)
    elif agent == "tfql":
        # One expanded-MDP step of the current policy from x^f, then the target value there.
        v_f = policy.apply(policy_params, obs, x_f, flow_time)
        x_next, f_next = losses.flow_step(v_f, x_f, flow_time, cfg.flow_steps)
        next_flow_value = losses.aggregate_ensemble(
            value.apply(target_value_params, obs, x_next, f_next), cfg.pessimism
        )
        target = losses.tfql_value_target(flow_time, returns, bootstrap, next_env_value, next_flow_value)
    else:
        raise ValueError(f"agent must be one of {AGENTS}, got {agent!r}")
    out = dict(flow_time=flow_time, x_f=x_f, target=target, returns=returns, bootstrap=bootstrap,
               next_env_value=next_env_value)
    return jax.tree_util.tree_map(jax.lax.stop_gradient, out)


def value_targets(state: TrainState, batch: dict, key: jax.Array, policy_params=None) -> dict:
    """``value_targets_at`` with the update's random draws: flow times ``f`` from
    ``sample_flow_times`` and the next step's noise ``z ~ N(0, I)`` (the next chunk starts from
    fresh noise at f = 0). ``policy_params`` defaults to the state's."""
    cfg = state.config
    b = batch["observations"].shape[0]
    k_time, k_next = jax.random.split(key)
    flow_time = losses.sample_flow_times(k_time, b, cfg.flow_steps, cfg.flow_time_mode)
    z = jax.random.normal(k_next, (b, cfg.chunk_dim))
    policy_params = state.policy_params if policy_params is None else policy_params
    return value_targets_at(cfg, policy_params, state.target_value_params, batch, flow_time, z)


def _loss(params, state: TrainState, batch: dict, key: jax.Array):
    cfg = state.config
    policy, value = policy_net(cfg), value_net(cfg)
    obs = batch["observations"]
    b = obs.shape[0]
    actions = batch["actions"].reshape(b, cfg.chunk_dim)
    k_value, k_noise, k_t = jax.random.split(key, 3)

    # --- value: regress V(s, x^f, f) on the reversed points towards the target ---
    vt = value_targets(state, batch, k_value, policy_params=params["policy"])
    flow_time, x_f, target = vt["flow_time"], vt["x_f"], vt["target"]
    values = value.apply(params["value"], obs, x_f, flow_time)
    value_loss = losses.value_loss(values, target, cfg.expectile)

    # --- policy: one flow step that the frozen value ensemble scores, plus BC ---
    frozen_value = jax.lax.stop_gradient(params["value"])
    x0 = jax.random.normal(k_noise, (b, cfg.chunk_dim))
    t = jax.random.uniform(k_t, (b,))
    x_t = interpolate(x0, actions, t[:, None])
    v_t = policy.apply(params["policy"], obs, x_t, t)
    # The interpolant feeds both the BC loss and the release-form policy step: one forward pass.
    chunk_mask = jnp.repeat(batch["valid"], cfg.action_dim, axis=1)  # drop entries past the episode end
    bc_loss = velocity_regression_loss(v_t, x0, actions, chunk_mask)
    if cfg.policy_loss == "release":
        x_step, t_step = losses.flow_step(v_t, x_t, t, cfg.flow_steps)
    else:
        v_f = policy.apply(params["policy"], obs, x_f, flow_time)
        x_step, t_step = losses.flow_step(v_f, x_f, flow_time, cfg.flow_steps)
    q = value.apply(frozen_value, obs, x_step, t_step)
    policy_loss = -jnp.mean(q)

    total = value_loss + policy_loss + cfg.alpha * bc_loss
    metrics = {
        "total_loss": total,
        "value_loss": value_loss,
        "policy_loss": policy_loss,
        "bc_loss": bc_loss,
        "value_mean": jnp.mean(values),
        "target_mean": jnp.mean(target),
    }
    return total, metrics


def _baseline_loss(params, state: TrainState, batch: dict, key: jax.Array):
    """A baseline's loss (``rql_lite.baselines``) with this update's random draws."""
    module = BASELINES[state.config.agent]
    draws = module.draws(state.config, key, batch["observations"].shape[0])
    return module.loss_at(state.config, params, state.target_value_params, batch, draws)


def update_unchecked(state: TrainState, batch: dict, key: jax.Array) -> tuple[TrainState, dict]:
    """One gradient step (pure, traceable): the body that ``train`` scans over."""
    cfg = state.config
    params = {"policy": state.policy_params, "value": state.value_params}
    loss = _loss if cfg.agent in EXPANDED else _baseline_loss
    grads, metrics = jax.grad(loss, has_aux=True)(params, state, batch, key)
    updates, opt_state = optimizer(cfg).update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    new_state = state.replace(
        step=state.step + 1,
        policy_params=params["policy"],
        value_params=params["value"],
        target_value_params=optax.incremental_update(critic_params(cfg, params["value"]), state.target_value_params,
                                                     cfg.tau),
        ema_policy_params=optax.incremental_update(params["policy"], state.ema_policy_params, 1.0 - cfg.ema_rate),
        opt_state=opt_state,
    )
    return new_state, metrics


_update_jit = jax.jit(update_unchecked)


def update(state: TrainState, batch: dict, key: jax.Array) -> tuple[TrainState, dict]:
    """One jitted update of the state's agent: ``(state, batch, key) -> (state, metrics)``.

    ``batch`` (see ``batch_shapes``): observations ``(B, obs)``, actions ``(B, h, d)``,
    rewards/masks/valid ``(B, h)``, next_observations ``(B, obs)`` (the state after the
    last valid step of the chunk). Shapes are checked against the config, and values
    for NaN/inf when they are concrete arrays (not under an outer ``jit``).
    """
    check_batch(state.config, batch)
    return _update_jit(state, batch, key)


def acting_params(state: TrainState) -> dict:
    """What acting reads: ``{"policy": the EMA policy}``, and for IFQL, which picks among flow samples by
    its critic, ``{"critic": the online critic}`` too. Works on stacked states alike."""
    if state.config.agent == "ifql":
        return {"policy": state.ema_policy_params, "critic": state.value_params["q"]}
    return {"policy": state.ema_policy_params}


def sample_actions(config: AgentConfig, params: dict, obs: jax.Array, key: jax.Array) -> jax.Array:
    """The agent's action chunks: ``(B, obs) -> (B, h, d)``, clipped to [-1, 1]. ``params``: ``acting_params``.

    RQL, TFQL, BC flow, FAWAC, FBRAC: K Euler steps of the flow from noise. FQL: one call of its
    one-step policy. IFQL: the best of N flow samples by its critic's lowest head."""
    b = obs.shape[0]
    if config.agent in EXPANDED:
        policy = policy_net(config)
        z = jax.random.normal(key, (b, config.chunk_dim))
        x = euler(lambda x, t: policy.apply(params["policy"], obs, x, t), z, 0.0, 1.0, config.flow_steps)
        x = jnp.clip(x, -1.0, 1.0)
    else:
        value = {"q": params["critic"]} if "critic" in params else None
        x = BASELINES[config.agent].act_with(config, params["policy"], value, obs, key)
    return x.reshape(b, config.horizon, config.action_dim)


@jax.jit
def _act(state: TrainState, obs: jax.Array, key: jax.Array) -> jax.Array:
    return sample_actions(state.config, acting_params(state), obs, key)


def act(state: TrainState, obs, key: jax.Array) -> jax.Array:
    """Action chunks from the EMA policy (``sample_actions``): obs ``(B, obs_dim)`` -> ``(B, h, d)``;
    ``(obs_dim,)`` -> ``(h, d)``."""
    obs = jnp.asarray(obs, jnp.float32)
    single = obs.ndim == 1
    if obs.shape[-1] != state.config.obs_dim or obs.ndim not in (1, 2):
        raise ValueError(f"observation shape {obs.shape} does not match obs_dim={state.config.obs_dim}; pass (obs_dim,) or (batch, obs_dim)")
    chunk = _act(state, obs[None] if single else obs, key)
    return chunk[0] if single else chunk


def num_params(params) -> int:
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
