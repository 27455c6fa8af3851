"""Fine-tuning: frozen parameters, frozen batch-norm statistics, learning-rate multipliers."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import mnist_bn_mlp
from jaxlearn.config import default_config
from jaxlearn.core import finetune, optim
from jaxlearn.errors import ConfigError
from jaxlearn.runs import checkpoint
from jaxlearn.training import train


def _leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_frozen_features_stay_bit_for_bit_and_keep_no_optimizer_state(small_config, tmp_path):
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, str(tmp_path / "pretrained"))
  small_config.init.from_checkpoint = str(tmp_path / "pretrained")
  small_config.freeze = "conv.*"
  train.train_and_evaluate(small_config, str(tmp_path / "tuned"))
  before = checkpoint.load_best_arrays(str(tmp_path / "pretrained"))
  after = checkpoint.load_best_arrays(str(tmp_path / "tuned"))
  for layer in ("conv1", "conv2", "conv3"):
    assert _leaves_equal(before["params"][layer], after["params"][layer]), layer
  for layer in ("fc1", "fc2"):
    assert not _leaves_equal(before["params"][layer], after["params"][layer]), layer
  adam_state = after["opt_state"]["inner_state"]["inner_states"]["trained"]["inner_state"][0][0]
  assert adam_state["mu"]["conv1"]["kernel"] is None  # No moments kept for frozen weights.
  assert adam_state["mu"]["fc1"]["kernel"].shape == (120, 84)


def test_batch_norm_statistics_of_frozen_layers_stay_fixed(small_config, tmp_path):
  config = mnist_bn_mlp.get_config()
  config.data.dir = small_config.data.dir
  config.model.hidden = (32, 16)
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 80, 1
  config.progress_bar, config.compilation_cache_dir = False, ""
  train.train_and_evaluate(config, str(tmp_path / "pretrained"))
  config.init.from_checkpoint = str(tmp_path / "pretrained")
  config.freeze = "hidden/0/.*,norms/0/.*"
  train.train_and_evaluate(config, str(tmp_path / "tuned"))
  before = checkpoint.load_best_arrays(str(tmp_path / "pretrained"))
  after = checkpoint.load_best_arrays(str(tmp_path / "tuned"))
  assert _leaves_equal(before["model_state"]["norms"]["0"], after["model_state"]["norms"]["0"])
  assert not _leaves_equal(before["model_state"]["norms"]["1"],
                           after["model_state"]["norms"]["1"])
  assert _leaves_equal(before["params"]["norms"]["0"], after["params"]["norms"]["0"])


def test_learning_rate_multipliers_scale_each_parameters_update():
  params = {"body": {"kernel": jnp.ones(3)}, "head": {"kernel": jnp.ones(2)}}
  grads = {"body": {"kernel": jnp.full(3, 2.0)}, "head": {"kernel": jnp.full(2, 4.0)}}
  config = ml_collections.ConfigDict(default_config().optimizer.to_dict())
  config.name, config.momentum = "sgd", 0.0
  config.lr_multipliers = "head/.*=1, .*=0.1"
  tx = optim.make_optimizer(config, optax.constant_schedule(0.5))
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["head"]["kernel"], -0.5 * 4.0)
  np.testing.assert_allclose(updates["body"]["kernel"], -0.5 * 0.1 * 2.0, rtol=1e-6)


def test_a_pattern_that_matches_nothing_lists_the_parameters(small_config, tmp_path):
  small_config.freeze = "encoder.*"
  with pytest.raises(ConfigError, match=r"config.freeze: 'encoder\.\*' matches no parameter. "
                     r"The model's parameters are: conv1/bias, conv1/kernel, conv2/bias, "):
    train.train_and_evaluate(small_config, str(tmp_path / "w"))
  small_config.freeze = ""
  small_config.optimizer.lr_multipliers = "head=abc"
  with pytest.raises(ConfigError, match="must be PATTERN=NUMBER"):
    train.train_and_evaluate(small_config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_frozen_layers_are_those_whose_every_parameter_is_frozen():
  params = {"bn": {"scale": 1, "bias": 1}, "conv": {"kernel": 1, "bias": 1}}
  assert finetune.frozen_layers(params, ["bn/.*", "conv/kernel"]) == ("bn",)
