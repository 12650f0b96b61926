"""Networks: an MLP, the velocity field v(s, x, t) and the value ensemble V(s, x, f).

Sizes follow the paper (4 x 512, GELU, LayerNorm in the value MLP only) but every
one is an argument. Each hidden layer is Dense -> GELU -> LayerNorm, the order of the
authors' release (its ``utils/networks.py``), with which every published number was made. The ensemble is one vectorised module (``nn.vmap`` over
parameters), so N heads cost one batched matmul per layer, not N Python calls.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The network definition, written into every checkpoint and exported agent. Parameter shapes do
# not depend on the layer order, so without it a file made with another definition would load
# silently and compute something else. v1 (before 2026-12) was Dense -> LayerNorm -> GELU.
NETWORK_DEFINITION = "v2: hidden layer = Dense -> GELU -> LayerNorm (the release's order)"
LEGACY_NETWORK_DEFINITION = "v1: hidden layer = Dense -> LayerNorm -> GELU"


class MLP(nn.Module):
    """Dense layers with GELU between them; optional LayerNorm after each hidden GELU.

    ``(..., in) -> (..., out_dim)``. Hidden layer: Dense -> GELU -> LayerNorm (the release's order).
    """

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x (..., in)`` -> ``(..., out_dim)``."""
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"))(x)
            x = nn.gelu(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"))(x)


def _condition(obs: jax.Array | None, x: jax.Array, t: jax.Array) -> jax.Array:
    """concat(s, x, t); ``t`` may be ``(B,)`` or ``(B, 1)``; ``obs`` may be None (unconditional toys)."""
    t = jnp.reshape(t, (x.shape[0], 1)).astype(x.dtype)
    parts = [x, t] if obs is None else [obs, x, t]
    return jnp.concatenate(parts, axis=-1)


class VelocityField(nn.Module):
    """Flow policy ``v_theta(s, x, t)``: ``(B, obs), (B, D), (B, 1) -> (B, D)``."""

    action_dim: int
    hidden_dims: Sequence[int] = (512, 512, 512, 512)

    @nn.compact
    def __call__(self, obs: jax.Array | None, x: jax.Array, t: jax.Array) -> jax.Array:
        """``obs (B, obs_dim)`` or None, ``x (B, D)``, flow time ``t (B, 1)`` -> velocity ``(B, D)``."""
        return MLP(self.hidden_dims, self.action_dim, layer_norm=False)(_condition(obs, x, t))


class ValueEnsemble(nn.Module):
    """N value heads over expanded states ``V_phi(s, x, f)``: returns ``(N, B)``."""

    num_heads: int = 10
    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array | None, x: jax.Array, f: jax.Array) -> jax.Array:
        """``obs (B, obs_dim)`` or None, ``x (B, D)``, flow time ``f (B,)`` or ``(B, 1)`` -> ``(N, B)``."""
        heads = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_heads,
        )
        return heads(self.hidden_dims, 1, layer_norm=self.layer_norm)(_condition(obs, x, f))[..., 0]
