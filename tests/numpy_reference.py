"""NumPy versions of the networks and of the quantities every agent's loss is built from, written
from the methods' equations (not from rql_lite's code), for the loss-against-reference tests.

Networks: each hidden layer is Dense -> GELU (tanh form) -> LayerNorm (eps 1e-6, as Flax's), the
output layer Dense alone; an ensemble stacks its heads' parameters on a leading axis.
"""
import numpy as np


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def mlp(params, x, head=None):
    """``params``: one MLP's parameter dict (Dense_i, LayerNorm_i); ``head`` picks one ensemble head."""
    pick = (lambda a: np.asarray(a, np.float64)) if head is None else (lambda a: np.asarray(a, np.float64)[head])
    dense = sorted((k for k in params if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    for i, name in enumerate(dense):
        x = x @ pick(params[name]["kernel"]) + pick(params[name]["bias"])
        if i < len(dense) - 1:
            x = gelu(x)
            ln = params.get(f"LayerNorm_{i}")
            if ln is not None:
                x = layer_norm(x, pick(ln["scale"]), pick(ln["bias"]))
    return x


def velocity(flow_params, obs, x, t):
    """``v(s, x, t)``: ``(B, obs), (B, D), (B,) -> (B, D)``."""
    return mlp(flow_params["params"]["MLP_0"], np.concatenate([obs, x, np.reshape(t, (-1, 1))], -1))


def critic(critic_params, obs, actions):
    """``Q_n(s, a)`` for every head: ``(N, B)``."""
    p = critic_params["params"]["VmapMLP_0"]
    heads = np.asarray(p["Dense_0"]["kernel"]).shape[0]
    inp = np.concatenate([obs, actions], -1)
    return np.stack([mlp(p, inp, head=n)[:, 0] for n in range(heads)])


def state_value(value_params, obs):
    return mlp(value_params["params"]["MLP_0"], obs)[:, 0]


def onestep(params, obs, z):
    return mlp(params["params"]["MLP_0"], np.concatenate([obs, z], -1))


def flow_sample(flow_params, obs, z, steps):
    """K Euler steps from noise at t = 0 to t = 1: ``x <- x + v(s, x, k/K) / K``; then clipped to [-1, 1]."""
    x = np.array(z, np.float64)
    for k in range(steps):
        x = x + velocity(flow_params, obs, x, np.full(len(x), k / steps)) / steps
    return np.clip(x, -1.0, 1.0)


def chunk_return_and_bootstrap(rewards, masks, valid, gamma):
    """Per chunk: the discounted sum of the rewards up to the first terminal or the episode's end, and
    the bootstrap weight gamma^n (n valid steps), 0 when a terminal was reached."""
    out_r, out_b = [], []
    for r, m, v in zip(rewards, masks, valid):
        total, n, ended = 0.0, 0, False
        for i in range(len(r)):
            if not v[i] or ended:
                continue
            total += gamma**i * r[i]
            n += 1
            ended = m[i] == 0
        out_r.append(total)
        out_b.append(0.0 if ended else gamma**n)
    return np.array(out_r), np.array(out_b)


def pessimistic(q, rho):
    return q.mean(0) - rho * q.std(0)


def bc_flow(flow_params, obs, actions, x0, t, keep):
    """Mean over kept entries of ``(v(s, x_t, t) - (a - x0))^2`` with ``x_t = (1 - t) x0 + t a``."""
    x_t = (1 - t[:, None]) * x0 + t[:, None] * actions
    err = (velocity(flow_params, obs, x_t, t) - (actions - x0)) ** 2
    return (err * keep).sum() / keep.sum()


def expectile(u, kappa):
    return np.where(u < 0, 1 - kappa, kappa) * u**2
