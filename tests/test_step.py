"""The pure steps: they learn, compile once, and agree under jit, sharded jit and pmap."""

import functools
import json
import os
import subprocess
import sys

from clu import metrics as clu_metrics
import flax.struct
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlearn import CLASSIFICATION, create_train_state, eval_step, train_step
from jaxlearn.core.step import train_steps
from jaxlearn.models import LeNet5
from tests.conftest import PROJECT_ROOT


def _state(learning_rate=1e-3):
  return create_train_state(LeNet5(rngs=nnx.Rngs(0)), optax.adam(learning_rate),
                            jax.random.PRNGKey(1))


def _batch(seed=0, n=32):
  rng = np.random.default_rng(seed)
  return {"inputs": rng.normal(size=(n, 28, 28, 1)).astype(np.float32),
          "targets": rng.integers(0, 10, n).astype(np.int32)}


def test_train_step_fits_a_fixed_batch():
  step = jax.jit(train_step, donate_argnums=0)
  state, batch = _state(learning_rate=1e-2), _batch()
  state, first = step(state, batch)
  for _ in range(30):
    state, metrics = step(state, batch)
  assert float(metrics.compute()["loss"]) < 0.2 * float(first.compute()["loss"])
  assert float(metrics.compute()["accuracy"]) == 1.0
  assert int(state.step) == 31


def test_train_step_loss_is_optax_cross_entropy_and_reports_health():
  state, batch = _state(), _batch()
  logits = nnx.merge(state.graphdef, state.params, state.model_state)(batch["inputs"])
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
  _, metrics = jax.jit(train_step)(state, batch)
  values = metrics.compute()
  np.testing.assert_allclose(values["loss"], expected, rtol=1e-5)
  grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
      nnx.merge(state.graphdef, p, state.model_state)(batch["inputs"]),
      batch["targets"]).mean())(state.params)
  np.testing.assert_allclose(values["grad_norm"], optax.tree.norm(grads), rtol=1e-4)
  np.testing.assert_allclose(values["param_norm"], optax.tree.norm(state.params), rtol=1e-2)


def test_eval_step_ignores_masked_padding():
  state, batch = _state(), _batch(n=8)
  padded = {k: np.concatenate([v, v[:4] * 0]) for k, v in batch.items()}
  padded["weights"] = np.array([1.0] * 8 + [0.0] * 4, np.float32)
  full = eval_step(state, batch).compute()
  masked = eval_step(state, padded).compute()
  np.testing.assert_allclose(masked["loss"], full["loss"], rtol=1e-6)
  np.testing.assert_allclose(masked["accuracy"], full["accuracy"])


def test_train_step_traces_once_for_a_stream_of_batches():
  traces = []

  def counted_step(state, batch):
    traces.append(1)  # Runs only while tracing, i.e. once per compilation.
    return train_step(state, batch)

  step = jax.jit(counted_step, donate_argnums=0)
  state = _state()
  for seed in range(4):
    state, _ = step(state, _batch(seed))
  assert len(traces) == 1


def test_a_chunk_of_steps_equals_the_steps_one_by_one():
  batches = [_batch(seed) for seed in range(4)]
  stacked = jax.tree.map(lambda *b: np.stack(b), *batches)
  one_by_one, metrics = _state(), []
  for batch in batches[1:4]:
    one_by_one, m = jax.jit(train_step)(one_by_one, batch)
    metrics.append(m)
  chunk = jax.jit(lambda s, b, first, count: train_steps(
      s, lambda i: jax.tree.map(lambda a: a[first + i], b), count, max_count=5), donate_argnums=0)
  chunked, merged, per_step = chunk(_state(), stacked, 1, 3)

  # Rounding only: Adam divides by sqrt(v), so a near-zero gradient's rounding can move a
  # weight by a few thousandths of a step (lr 1e-3).
  for a, b in zip(jax.tree.leaves(chunked.params), jax.tree.leaves(one_by_one.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=5e-6)
  assert int(chunked.step) == 3
  expected = metrics[0].merge(metrics[1]).merge(metrics[2]).compute()
  # The chunk measures the parameters' norm once, after its last step.
  expected["param_norm"] = optax.tree.norm(one_by_one.params)
  for name, value in merged.compute().items():
    np.testing.assert_allclose(value, expected[name], rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(per_step["loss"][:3], [m.compute()["loss"] for m in metrics],
                             rtol=1e-5)
  np.testing.assert_allclose(per_step["grad_norm"][:3],
                             [m.compute()["grad_norm"] for m in metrics], rtol=1e-5)
  assert not per_step["nonfinite"].any() and per_step["loss"].shape == (5,)
  chunk(chunked, stacked, 0, 2)  # Another start and length: the same compiled program.
  assert chunk._cache_size() == 1


def test_jit_sharded_and_pmap_match_one_device_on_8_cpu_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, os.path.join(PROJECT_ROOT, "tests", "parallel_check.py")],
                       env=env, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 8
  assert result["jit_cache_size"] == 1
  assert result["max_diff_sharded"] < 1e-4, result
  assert result["max_diff_pmap"] < 1e-4, result
  assert abs(result["loss_single"] - result["loss_pmap"]) < 1e-5, result
  assert abs(result["loss_single"] - result["loss_sharded"]) < 1e-5, result
  assert result["max_diff_chunked"] < 1e-4, result
  assert abs(result["loss_single"] - result["loss_chunked"]) < 1e-5, result


def test_a_custom_loss_fn_is_minimised_and_reported():
  state, batch = _state(), _batch()
  batch["teacher"] = np.random.default_rng(5).normal(size=(32, 10)).astype(np.float32)

  def to_teacher(outputs, batch):  # Squared distance to the batch's teacher logits.
    return ((outputs - batch["teacher"]) ** 2).mean(axis=-1)

  logits = state.apply_model(state.params, batch["inputs"], train=False)[0]
  expected = np.mean((np.asarray(logits) - batch["teacher"]) ** 2)
  _, metrics = jax.jit(functools.partial(train_step, loss_fn=to_teacher))(state, batch)
  np.testing.assert_allclose(metrics.compute()["loss"], expected, rtol=1e-5)
  grads = jax.grad(lambda p: to_teacher(state.apply_model(p, batch["inputs"], train=False)[0],
                                        batch).mean())(state.params)
  np.testing.assert_allclose(metrics.compute()["grad_norm"], optax.tree.norm(grads), rtol=1e-4)
  with pytest.raises(ValueError, match=r"The loss must give one value per example, shape "
                     r"\(32,\), but gave shape \(\)"):
    train_step(state, batch, loss_fn=lambda outputs, batch: to_teacher(outputs, batch).mean())


def test_weights_weight_the_loss_and_every_metric_in_training_and_evaluation():
  state, batch = _state(), _batch(n=8)
  weights = np.array([1, 2, 0, 1, 3, 0.5, 1, 1], np.float32)
  batch["weights"] = weights
  logits = np.asarray(state.apply_model(state.params, batch["inputs"], train=False)[0])
  per_example = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["targets"]))
  correct = (logits.argmax(-1) == batch["targets"]).astype(np.float32)
  weighted = lambda v: float((v * weights).sum() / weights.sum())
  evaluated = eval_step(state, batch).compute()
  np.testing.assert_allclose(evaluated["loss"], weighted(per_example), rtol=1e-5)
  np.testing.assert_allclose(evaluated["accuracy"], weighted(correct), rtol=1e-6)
  _, metrics = train_step(state, batch)  # Train mode is eval mode for LeNet-5.
  np.testing.assert_allclose(metrics.compute()["loss"], weighted(per_example), rtol=1e-5)


def test_a_chunk_merges_any_metric_kind_not_only_sums():
  """A min-type metric: merging from zeros would report 0, not the smallest step loss."""

  @flax.struct.dataclass
  class MinLoss(clu_metrics.Metric):
    value: jax.Array

    @classmethod
    def from_model_output(cls, *, loss, **_):
      return cls(value=loss.mean())

    def merge(self, other):
      return type(self)(jnp.minimum(self.value, other.value))

    def compute(self):
      return self.value

  task = CLASSIFICATION._replace(
      train_metrics=clu_metrics.Collection.create(min_loss=MinLoss))
  batches = [_batch(seed) for seed in range(3)]
  stacked = jax.tree.map(lambda *b: np.stack(b), *batches)
  chunk = jax.jit(lambda s, b: train_steps(s, lambda i: jax.tree.map(lambda a: a[i], b), 3,
                                           max_count=3, task=task))
  _, merged, health = chunk(_state(), stacked)
  np.testing.assert_allclose(merged.compute()["min_loss"], np.min(health["loss"]), rtol=1e-6)
  assert float(np.min(health["loss"])) > 1.0  # Far from the zeros a wrong merge starts from.


@pytest.mark.parametrize("shape", [(4, 32, 32, 1), (4, 28, 28, 3), (4, 28, 28)],
                         ids=["32x32x1", "28x28x3", "no_channel_axis"])
def test_inputs_the_model_cannot_take_are_named_at_trace_time(shape):
  batch = {"inputs": np.zeros(shape, np.float32), "targets": np.zeros(4, np.int32)}
  expected = rf"LeNet5 cannot take inputs shaped \({', '.join(map(str, shape[1:]))},?\) " \
      r"\(float32\) per example \(a batch of 4\); it takes images shaped \(28, 28, 1\): " \
      r".*Feed it the input shape it was built for"
  with pytest.raises(ValueError, match=expected):
    jax.jit(train_step)(_state(), batch)
  with pytest.raises(ValueError, match=expected):
    jax.jit(eval_step)(_state(), batch)


def test_a_label_outside_the_classes_makes_the_step_non_finite_not_silent():
  batch = _batch(n=8)
  batch["targets"][3] = 12
  state, metrics = jax.jit(train_step)(_state(), batch)
  assert float(metrics.compute()["nonfinite"]) == 1.0
  skipped, metrics = jax.jit(functools.partial(train_step, skip_nonfinite=True))(_state(), batch)
  assert float(metrics.compute()["nonfinite"]) == 1.0
  for a, b in zip(jax.tree.leaves(skipped.params), jax.tree.leaves(_state().params)):
    np.testing.assert_array_equal(a, b)
