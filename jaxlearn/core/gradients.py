"""Check a function's derivatives against finite differences: the tool for a custom layer.

  report = jaxlearn.gradcheck(fn, *args)      # prints a table, returns a GradcheckReport
  assert report.ok

Every floating-point argument of `fn` (arrays or pytrees such as a model's
parameters) is checked on its own, in forward and reverse mode, to first and
second order, in float64: `jax.test_util.check_grads` gives the verdict, and
the report adds the measured relative error of the derivative along a random
direction (and, in reverse mode, a random output cotangent) against central
differences, so a near miss shows before it fails. A function with a
`jax.custom_vjp` (a layer with its own backward pass) cannot be differentiated
in forward mode: those checks are reported as not applicable, and the
reverse-mode ones test the backward pass against finite differences.

For a model: `gradcheck(lambda params, x: model_fn(params, x), params, x)` with
`model_fn` merging the parameters into the module (see tests/test_gradcheck.py).
"""

import contextlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import test_util
import numpy as np

MODES = ("fwd", "rev")


class Check(NamedTuple):
  """One argument, mode and order: check_grads' verdict and the measured error."""
  argument: int
  mode: str
  order: int
  passed: bool
  relative_error: float
  message: str = ""
  applicable: bool = True  # False: JAX cannot differentiate fn this way (a custom_vjp in fwd)


class GradcheckReport(NamedTuple):
  checks: list[Check]

  @property
  def ok(self) -> bool:
    """Every check that applies passed (and at least one applied)."""
    applied = [c for c in self.checks if c.applicable]
    return bool(applied) and all(c.passed for c in applied)

  def __str__(self) -> str:
    lines = ["argument  mode  order  relative error  result"]
    for c in self.checks:
      result = ("not applicable: " + c.message) if not c.applicable else (
          "ok" if c.passed else "FAILED: " + c.message)
      error = f"{c.relative_error:14.2e}" if c.applicable else f"{'-':>14}"
      lines.append(f"{c.argument:>8}  {c.mode:>4}  {c.order:>5}  {error}  {result}")
    failed = sum(c.applicable and not c.passed for c in self.checks)
    lines.append("all derivatives agree with finite differences" if self.ok else
                 f"{failed} of {len(self.checks)} checks failed")
    return "\n".join(lines)


def gradcheck(fn: Callable, *args, order: int = 2, modes=MODES, eps: float | None = None,
              atol: float | None = None, rtol: float | None = None, seed: int = 0,
              precision: str = "float64", verbose: bool = True) -> GradcheckReport:
  """Compares `fn`'s derivatives w.r.t. each float argument with finite differences.

  `fn` may return any pytree of arrays. Integer arguments (labels, token ids)
  are passed through unchecked. Runs in float64 unless `precision="float32"`
  (for code that cannot run in float64, such as Flax's RNN scans); `eps` is the
  finite difference step (default 1e-6 in float64, small so that a difference
  rarely straddles a ReLU's kink; 1e-3 in float32), `atol`/`rtol`
  check_grads' tolerances (its defaults for the precision when None).

  Returns:
    A `GradcheckReport` (`.ok`, and one check per argument, mode and order).

  >>> import jax.numpy as jnp
  >>> report = gradcheck(lambda w, x: jnp.tanh(x @ w).sum(), jnp.ones((3, 2)), jnp.ones((4, 3)),
  ...                    verbose=False)
  >>> report.ok
  True
  """
  if precision not in ("float64", "float32"):
    raise ValueError(f"precision={precision!r}; use 'float64' or 'float32'.")
  wide = precision == "float64"
  eps = eps if eps is not None else (1e-6 if wide else 1e-3)
  with _float64() if wide else contextlib.nullcontext():
    args = jax.tree.map(_to_float64, args) if wide else args
    checks = []
    key = jax.random.key(seed)
    for i, arg in enumerate(args):
      if not _float_leaves(arg):
        continue
      f = _of_one_argument(fn, args, i)
      key, direction_key, cotangent_key = jax.random.split(key, 3)
      direction = _random_like(arg, direction_key)
      for mode in modes:
        g = f
        for k in range(1, order + 1):
          try:
            error = _directional_error(g, arg, direction, mode, cotangent_key, eps)
          except TypeError as e:  # e.g. forward mode of a jax.custom_vjp function
            checks.append(Check(i, mode, k, False, float("nan"), _not_applicable(e), False))
            break
          try:
            test_util.check_grads(f, (arg,), order=k, modes=(mode,), eps=eps, atol=atol,
                                  rtol=rtol)
            passed, message = True, ""
          except AssertionError as e:
            passed, message = False, str(e).strip().splitlines()[0][:200]
          checks.append(Check(i, mode, k, passed, error, message))
          g = _directional(g, mode, direction, cotangent_key)
  report = GradcheckReport(checks)
  if verbose:
    print(report)
  return report


def _not_applicable(error: TypeError) -> str:
  text = str(error).strip().splitlines()[0]
  if "custom_vjp" in text or "forward-mode" in text:
    return ("fn has a jax.custom_vjp, which JAX differentiates in reverse mode only; the "
            "reverse-mode checks test its backward pass")
  return text[:200]


def _directional(g, mode, direction, cotangent_key):
  """x -> the derivative of g at x along `direction`, computed in `mode`.

  Reverse mode contracts the output with a random cotangent first, so the
  result is the scalar <u, J v> from a vector-Jacobian product.
  """
  if mode == "fwd":
    return lambda x: jax.jvp(g, (x,), (direction,))[1]

  def reverse(x):
    out, pull = jax.vjp(g, x)
    cotangent = _random_like(out, cotangent_key)
    return _vdot(pull(cotangent)[0], direction)

  return reverse


def _directional_error(g, x, direction, mode, cotangent_key, eps) -> float:
  """|analytic - central difference| / max(|central difference|, 1) of g's derivative."""
  analytic = _directional(g, mode, direction, cotangent_key)(x)
  step = lambda sign: g(jax.tree.map(lambda a, d: a + sign * eps * d if _is_float(a) else a,
                                     x, direction))
  numeric = jax.tree.map(lambda p, m: (p - m) / (2 * eps), step(1.0), step(-1.0))
  if mode == "rev":
    numeric = _vdot(_random_like(g(x), cotangent_key), numeric)
  diff = max((float(jnp.max(jnp.abs(a - n))) for a, n in
              zip(jax.tree.leaves(analytic), jax.tree.leaves(numeric))), default=0.0)
  scale = max((float(jnp.max(jnp.abs(n))) for n in jax.tree.leaves(numeric)), default=0.0)
  return diff / max(scale, 1.0)


def _of_one_argument(fn, args, i):
  """fn of argument i alone, compiled (check_grads would otherwise run it op by op)."""
  return jax.jit(lambda a: fn(*args[:i], a, *args[i + 1:]))


def _random_like(tree, key):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, max(1, len(leaves)))
  return jax.tree.unflatten(treedef, [
      jax.random.normal(k, jnp.shape(a), jnp.asarray(a).dtype) if _is_float(a)
      else np.zeros(np.shape(a), jax.dtypes.float0) for k, a in zip(keys, leaves)])


def _vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
             if _is_float(x))


def _is_float(a) -> bool:
  return jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)


def _float_leaves(tree) -> list:
  return [a for a in jax.tree.leaves(tree) if _is_float(a)]


def _to_float64(a):
  return jnp.asarray(a, jnp.float64) if _is_float(a) else a


@contextlib.contextmanager
def _float64():
  enable = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64
  with enable(True):
    yield
