"""Networks: an MLP, the velocity field v(s, x, t) and the value ensemble V(s, x, f).

Sizes follow the paper (4 x 512, GELU, LayerNorm in the value MLP only) but every
one is an argument. Each hidden layer is Dense -> GELU -> LayerNorm, the order of the
authors' release (its ``utils/networks.py``), with which every published number was made. The ensemble is one vectorised module (``nn.vmap`` over
parameters), so N heads cost one batched matmul per layer, not N Python calls.

``matmul_precision`` (``AgentConfig.matmul_precision``, see ``dense_options``) sets how every Dense
product is computed; ``"default"`` builds exactly the layers above, and no value changes a parameter.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# The network definition, written into every checkpoint and exported agent. Parameter shapes do
# not depend on the layer order, so without it a file made with another definition would load
# silently and compute something else. v1 (before 2026-12) was Dense -> LayerNorm -> GELU.
NETWORK_DEFINITION = "v2: hidden layer = Dense -> GELU -> LayerNorm (the release's order)"
LEGACY_NETWORK_DEFINITION = "v1: hidden layer = Dense -> LayerNorm -> GELU"

# How the networks' matrix products are computed (``AgentConfig.matmul_precision``). It is not part
# of the definition above: parameters, shapes and layer order are the same for every value.
MATMUL_PRECISIONS = ("default", "float32", "tensorfloat32", "bfloat16")


@jax.custom_vjp
def bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x (..., k) @ w (k, n)`` with both operands rounded to bfloat16 and float32 accumulation.

    Returns float32. The backward products are computed the same way (bfloat16 operands, float32
    results), as mixed-precision training does on bfloat16 hardware. Parameters stay float32.
    """
    return _bf16_dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))


def _bf16_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return _bf16_dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())))


def _bf16_dot_general(a: jax.Array, b: jax.Array, dims) -> jax.Array:
    """``dot_general`` of two bfloat16 arrays, accumulated and returned in float32.

    XLA:CPU cannot run every bfloat16 x bfloat16 -> float32 product (its loop-level dot rejects
    that type), so on CPU the bfloat16 values are widened to float32 first: a product of two
    bfloat16 numbers is exact in float32, so the result is the same sum, only computed at float32
    speed. Elsewhere the operands stay bfloat16 and the device's bfloat16 units do the products.
    """
    if jax.default_backend() == "cpu":
        return lax.dot_general(a.astype(jnp.float32), b.astype(jnp.float32), dims, precision=lax.Precision.HIGHEST)
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _bf16_matmul_fwd(x, w):
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    return _bf16_dot(xb, wb), (xb, wb)


def _bf16_matmul_bwd(residuals, g):
    xb, wb = residuals
    gb = g.astype(jnp.bfloat16)
    dx = _bf16_dot_general(gb, wb, (((gb.ndim - 1,), (1,)), ((), ())))
    dw = _bf16_dot_general(xb.reshape(-1, xb.shape[-1]), gb.reshape(-1, gb.shape[-1]), (((0,), (0,)), ((), ())))
    return dx, dw


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def _dense_bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **_):
    """A ``dot_general`` for ``nn.Dense`` (which contracts the last axis of the input with the first of
    the kernel) that computes ``bf16_matmul``."""
    (contract_lhs, contract_rhs), (batch_lhs, batch_rhs) = dimension_numbers
    if tuple(contract_lhs) != (lhs.ndim - 1,) or tuple(contract_rhs) != (0,) or batch_lhs or batch_rhs or rhs.ndim != 2:
        raise ValueError(f"bfloat16 matmul supports Dense's product only, got dimension numbers {dimension_numbers}")
    return bf16_matmul(lhs, rhs)


def dense_options(matmul_precision: str) -> dict:
    """Keyword arguments for ``nn.Dense`` that compute its product at ``matmul_precision``.

    * ``"default"``: none (XLA's default for float32: float32 on CPU, TF32 on NVIDIA Ampere and
      later GPUs, one bfloat16 pass on TPU). Exactly the layers of the authors' release.
    * ``"float32"``: ``precision=HIGHEST``, full float32 products on every device.
    * ``"tensorfloat32"``: the ``TF32_TF32_F32`` dot algorithm on GPU; elsewhere JAX's
      ``"tensorfloat32"`` level (``HIGH``), which XLA:CPU computes in float32.
    * ``"bfloat16"``: ``bf16_matmul``, bfloat16 operands and float32 accumulation, forward and
      backward, on every device (XLA:CPU ignores precision settings, so this is done with casts).
    """
    if matmul_precision == "default":
        return {}
    if matmul_precision == "float32":
        return {"precision": lax.Precision.HIGHEST}
    if matmul_precision == "tensorfloat32":
        return {"precision": "TF32_TF32_F32" if jax.default_backend() == "gpu" else lax.Precision.HIGH}
    if matmul_precision == "bfloat16":
        return {"dot_general": _dense_bf16_dot_general}
    raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {matmul_precision!r}")


class MLP(nn.Module):
    """Dense layers with GELU between them; optional LayerNorm after each hidden GELU.

    ``(..., in) -> (..., out_dim)``. Hidden layer: Dense -> GELU -> LayerNorm (the release's order).
    """

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    matmul_precision: str = "default"  # how the Dense products are computed: see ``dense_options``

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x (..., in)`` -> ``(..., out_dim)``."""
        options = dense_options(self.matmul_precision)
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), **options)(x)
            x = nn.gelu(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                        **options)(x)


def _condition(obs: jax.Array | None, x: jax.Array, t: jax.Array) -> jax.Array:
    """concat(s, x, t); ``t`` may be ``(B,)`` or ``(B, 1)``; ``obs`` may be None (unconditional toys)."""
    t = jnp.reshape(t, (x.shape[0], 1)).astype(x.dtype)
    parts = [x, t] if obs is None else [obs, x, t]
    return jnp.concatenate(parts, axis=-1)


class VelocityField(nn.Module):
    """Flow policy ``v_theta(s, x, t)``: ``(B, obs), (B, D), (B, 1) -> (B, D)``."""

    action_dim: int
    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    matmul_precision: str = "default"

    @nn.compact
    def __call__(self, obs: jax.Array | None, x: jax.Array, t: jax.Array) -> jax.Array:
        """``obs (B, obs_dim)`` or None, ``x (B, D)``, flow time ``t (B, 1)`` -> velocity ``(B, D)``."""
        return MLP(self.hidden_dims, self.action_dim, layer_norm=False,
                   matmul_precision=self.matmul_precision)(_condition(obs, x, t))


class ValueEnsemble(nn.Module):
    """N value heads over expanded states ``V_phi(s, x, f)``: returns ``(N, B)``."""

    num_heads: int = 10
    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    layer_norm: bool = True
    matmul_precision: str = "default"

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
        mlp = heads(self.hidden_dims, 1, layer_norm=self.layer_norm, matmul_precision=self.matmul_precision)
        return mlp(_condition(obs, x, f))[..., 0]


class CriticEnsemble(nn.Module):
    """N heads of an ordinary critic ``Q(s, a)`` over complete action chunks, ``(N, B)``: the value
    of the baselines (FQL, IFQL, FAWAC, FBRAC), which score finished actions only. Same MLP as
    ``ValueEnsemble`` without the flow-time input."""

    num_heads: int = 10
    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    layer_norm: bool = True
    matmul_precision: str = "default"

    @nn.compact
    def __call__(self, obs: jax.Array, actions: jax.Array) -> jax.Array:
        """``obs (B, obs_dim)``, ``actions (B, D)`` -> ``(N, B)``."""
        heads = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0,
                        axis_size=self.num_heads)
        mlp = heads(self.hidden_dims, 1, layer_norm=self.layer_norm, matmul_precision=self.matmul_precision)
        return mlp(jnp.concatenate([obs, actions], axis=-1))[..., 0]


class StateValue(nn.Module):
    """One state value ``V(s)``, ``(B, obs_dim) -> (B,)`` (IFQL's and FAWAC's)."""

    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    layer_norm: bool = True
    matmul_precision: str = "default"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, 1, layer_norm=self.layer_norm, matmul_precision=self.matmul_precision)(obs)[..., 0]


class OneStepPolicy(nn.Module):
    """FQL's one-step policy ``mu(s, z)``: noise to an action chunk in one call, ``(B, obs), (B, D) -> (B, D)``."""

    action_dim: int
    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    matmul_precision: str = "default"

    @nn.compact
    def __call__(self, obs: jax.Array, z: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, self.action_dim, layer_norm=False,
                   matmul_precision=self.matmul_precision)(jnp.concatenate([obs, z], axis=-1))
