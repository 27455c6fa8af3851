"""Runs a function with its convolutions and max pools swapped for the CPU forms.

The function is traced once to a jaxpr and that jaxpr is evaluated equation by
equation: `conv_general_dilated` goes to `xla_cpu.conv`, non-overlapping
`reduce_window_max` to `xla_cpu.pooling`, nested `jit` calls are opened so
their equations are swapped too, and every other equation is bound as traced.
Evaluating it inside `jax.grad` then differentiates the swapped forms.
"""

import jax
from jax.extend import core as jex_core

from jaxlearn.xla_cpu import conv, pooling

_NESTED_JIT = ("jit", "pjit")


def with_cpu_kernels(fn):
  """`fn` (pytrees in, pytrees out) with the swaps above; same values, faster CPU gradients."""

  def swapped(*args):
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    outs = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

  return swapped


def _evaluate(jaxpr, consts, args):
  env = {}

  def read(var):
    return var.val if isinstance(var, jex_core.Literal) else env[var]

  for var, value in zip(jaxpr.constvars, consts):
    env[var] = value
  for var, value in zip(jaxpr.invars, args):
    env[var] = value
  for eqn in jaxpr.eqns:
    outs = _apply(eqn, [read(v) for v in eqn.invars])
    if not eqn.primitive.multiple_results:
      outs = [outs]
    for var, value in zip(eqn.outvars, outs):
      env[var] = value
  return [read(v) for v in jaxpr.outvars]


def _apply(eqn, args):
  name, params = eqn.primitive.name, eqn.params
  if name == "conv_general_dilated" and _plain_conv(params):
    return conv.conv_general_dilated(
        *args, params["window_strides"], params["padding"], params["lhs_dilation"],
        params["rhs_dilation"], params["dimension_numbers"], params["feature_group_count"],
        params["precision"], preferred_element_type=params["preferred_element_type"])
  if name == "reduce_window_max" and pooling.fits(
      args[0].shape, params["window_dimensions"], params["window_strides"], params["padding"],
      params["base_dilation"], params["window_dilation"]):
    return pooling.max_pool(args[0], *params["window_dimensions"][1:3])
  if name in _NESTED_JIT:
    inner = params["jaxpr"]
    return _evaluate(inner.jaxpr, inner.consts, args)
  bind_params = eqn.primitive.get_bind_params(params)
  subfuns = ()
  if isinstance(bind_params, tuple):  # Older JAX: (sub-functions, params).
    subfuns, bind_params = bind_params
  return eqn.primitive.bind(*subfuns, *args, **bind_params)


def _plain_conv(params) -> bool:
  return params["batch_group_count"] == 1 and params.get("out_sharding") is None
