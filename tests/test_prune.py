"""Magnitude pruning: the schedule, the share of zeros reached, and zeros that stay zero."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlearn.core import prune
from jaxlearn.errors import ConfigError
from jaxlearn.runs import checkpoint
from jaxlearn.training import train


def test_the_cubic_schedule_rises_from_zero_to_the_target():
  values = [float(prune.cubic_sparsity(0.8, 10, t)) for t in (0, 5, 10, 20)]
  assert values == pytest.approx([0.0, 0.8 * (1 - 0.5 ** 3), 0.8, 0.8])


def _run(tx, params, grads_at, steps):
  state = tx.init(params)
  for t in range(steps):
    updates, state = tx.update(grads_at(t), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_the_target_share_of_weights_is_zero_and_biases_are_untouched(scope):
  rng = np.random.default_rng(0)
  params = {"a": {"kernel": jnp.asarray(rng.normal(size=(10, 20)), jnp.float32),
                  "bias": jnp.ones(20)},
            "b": {"kernel": jnp.asarray(rng.normal(size=(20, 5)) * 3, jnp.float32)}}
  tx = optax.chain(optax.sgd(0.01), prune.magnitude_pruning(0.75, 4, [".*kernel"], scope))
  grads = lambda t: jax.tree.map(lambda p: jnp.full(p.shape, 0.1, p.dtype), params)
  pruned, _ = _run(tx, params, grads, 6)
  shares = prune.sparsity_of(pruned, [".*kernel"])
  assert shares["all"] == pytest.approx(0.75)  # floor(0.75 * 300) = 225 of 300 weights.
  if scope == "layer":
    assert shares["a/kernel"] == pytest.approx(0.75) and shares["b/kernel"] == pytest.approx(0.75)
  else:  # Ranked together: the larger-scaled "b" keeps more of its weights.
    assert shares["b/kernel"] < 0.75 < shares["a/kernel"]
  assert not np.any(np.asarray(pruned["a"]["bias"]) == 0)


def test_a_pruned_weight_stays_zero_whatever_its_gradient():
  params = {"w": {"kernel": jnp.array([0.1, -0.2, 3.0, 4.0])}}
  tx = optax.chain(optax.sgd(1.0), prune.magnitude_pruning(0.5, 1, [".*kernel"]))
  state = tx.init(params)
  updates, state = tx.update({"w": {"kernel": jnp.zeros(4)}}, state, params)
  params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params["w"]["kernel"], [0.0, 0.0, 3.0, 4.0])
  # A gradient that would make the pruned weights the largest: they stay zero.
  updates, state = tx.update({"w": {"kernel": jnp.array([-10.0, -10.0, 0.0, 0.0])}}, state,
                             params)
  params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params["w"]["kernel"], [0.0, 0.0, 3.0, 4.0])


def test_a_pruned_run_saves_its_zeros_and_keeps_them(small_config, tmp_path):
  small_config.prune.sparsity = 0.8
  small_config.prune.epochs = 1
  summary = train.train_and_evaluate(small_config, str(tmp_path / "w"))
  assert summary["epochs_run"] == 2
  stored = checkpoint.load_best_arrays(str(tmp_path / "w"))
  shares = prune.sparsity_of(stored["params"], [".*kernel"])
  assert shares["all"] == pytest.approx(0.8, abs=1e-4)
  assert not np.all(stored["params"]["fc2"]["bias"] == 0)


def test_bad_pruning_settings_are_named(small_config, tmp_path):
  small_config.prune.sparsity = 1.0
  with pytest.raises(ConfigError, match=r"config.prune.sparsity=1.0 is not allowed: it must "
                     r"be in \[0, 1\)"):
    train.train_and_evaluate(small_config, str(tmp_path / "w"))
  small_config.prune.sparsity, small_config.prune.params = 0.5, "weights"
  with pytest.raises(ConfigError, match="config.prune.params: 'weights' matches no parameter"):
    train.train_and_evaluate(small_config, str(tmp_path / "w"))
