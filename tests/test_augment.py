"""Augmentation ops against numpy references, and inside the compiled training step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlearn.config import default_config
from jaxlearn.data import augment
from jaxlearn.errors import ConfigError
from jaxlearn.training import train

IMAGE = jnp.asarray(np.random.default_rng(0).normal(size=(8, 8, 2)), jnp.float32)


def _augment_config(**fields):
  config = ml_collections.ConfigDict(default_config().augment.to_dict())
  config.update(fields)
  return config


def test_random_crop_is_a_window_of_the_zero_padded_image():
  padded = np.pad(np.asarray(IMAGE), ((2, 2), (2, 2), (0, 0)))
  windows = {(i, j): padded[i:i + 8, j:j + 8] for i in range(5) for j in range(5)}
  seen = set()
  for seed in range(40):
    out = np.asarray(augment.random_crop(IMAGE, jax.random.key(seed), padding=2))
    match = [k for k, w in windows.items() if np.array_equal(w, out)]
    assert match
    seen.add(match[0])
  assert len(seen) > 10
  np.testing.assert_array_equal(augment.random_crop(IMAGE, jax.random.key(0), padding=0), IMAGE)


def test_horizontal_flip_mirrors_or_keeps():
  outs = [np.asarray(augment.horizontal_flip(IMAGE, jax.random.key(s))) for s in range(20)]
  flipped = [np.array_equal(o, np.asarray(IMAGE)[:, ::-1]) for o in outs]
  kept = [np.array_equal(o, np.asarray(IMAGE)) for o in outs]
  assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_warp_by_a_quarter_turn_is_rot90_and_a_shift_is_a_zero_filled_roll():
  quarter = augment._warp(IMAGE, jnp.pi / 2, jnp.zeros(2))  # pylint: disable=protected-access
  # A positive angle turns the picture clockwise as displayed (rows down, columns right).
  np.testing.assert_allclose(quarter, np.rot90(np.asarray(IMAGE), k=-1, axes=(0, 1)), atol=1e-5)
  shifted = augment._warp(IMAGE, 0.0, jnp.asarray([1.0, -2.0]))  # pylint: disable=protected-access
  expected = np.zeros_like(np.asarray(IMAGE))
  expected[1:, :-2] = np.asarray(IMAGE)[:-1, 2:]
  np.testing.assert_allclose(shifted, expected, atol=1e-5)


def test_zero_strength_ops_are_the_identity():
  key = jax.random.key(3)
  for out in (augment.rotation(IMAGE, key, max_degrees=0.0),
              augment.translation(IMAGE, key, max_pixels=0.0),
              augment.gaussian_noise(IMAGE, key, std=0.0),
              augment.random_erasing(IMAGE, key, probability=0.0, max_area=0.2)):
    np.testing.assert_allclose(out, IMAGE, atol=1e-5)


def test_gaussian_noise_has_the_asked_std():
  big = jnp.zeros((64, 64, 3))
  noise = augment.gaussian_noise(big, jax.random.key(0), std=0.3)
  assert float(noise.std()) == pytest.approx(0.3, rel=0.05)


def test_random_erasing_zeroes_one_rectangle():
  ones = jnp.ones((16, 16, 1))
  out = np.asarray(augment.random_erasing(ones, jax.random.key(0), probability=1.0,
                                          max_area=0.3))[..., 0]
  rows, cols = np.nonzero(out == 0)
  assert 0 < len(rows) <= 0.3 * 256 + 16
  box = out[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
  assert (box == 0).all()  # The zeros form one filled rectangle.


def test_batch_augment_gives_each_example_its_own_draw_and_rejects_unknown_ops():
  batch = jnp.broadcast_to(IMAGE, (6, 8, 8, 2))
  fn = augment.make_augment(_augment_config(ops="random_crop, horizontal_flip"))
  out = np.asarray(fn(batch, jax.random.key(0)))
  assert len({o.tobytes() for o in out}) > 1
  assert augment.make_augment(_augment_config(ops="")) is None
  with pytest.raises(ConfigError, match="Unknown augmentation \\['flip'\\] in "
                     "config.augment.ops; choose from \\['gaussian_noise', 'horizontal_flip'"):
    augment.make_augment(_augment_config(ops="flip"))


def test_training_with_augmentation_runs_and_changes_the_result(small_config, tmp_path):
  plain = train.train_and_evaluate(small_config, str(tmp_path / "plain"))
  small_config.augment.ops = "translation,random_erasing"
  augmented = train.train_and_evaluate(small_config, str(tmp_path / "augmented"))
  assert augmented["history"][0]["train_loss"] != plain["history"][0]["train_loss"]
  assert augmented["test_accuracy"] > 0.5


def test_rotation_angles_stay_within_max_degrees_and_fill_the_range():
  """A bright dot 6 pixels right of the centre: its angle after rotating is the drawn angle."""
  size = 17
  image = jnp.zeros((size, size, 1)).at[8, 14, 0].set(1.0)
  angles = []
  for seed in range(200):
    out = np.asarray(augment.rotation(image, jax.random.key(seed), max_degrees=30.0))[..., 0]
    rows, cols = np.nonzero(out > 1e-3)
    weights = out[rows, cols]
    y, x = np.average(rows, weights=weights) - 8, np.average(cols, weights=weights) - 8
    angles.append(np.degrees(np.arctan2(y, x)))
  angles = np.abs(np.array(angles))
  assert angles.max() <= 31.0  # Degrees, not radians (30 rad would spin it all the way round).
  assert angles.max() >= 25.0 and np.median(angles) > 8.0  # The whole range is drawn.


def test_every_step_draws_a_fresh_augmentation():
  """With a learning rate of 0 the weights never move: only the draw changes the loss."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from jaxlearn import create_train_state, train_step  # pylint: disable=import-outside-toplevel
  from jaxlearn.models import LeNet5  # pylint: disable=import-outside-toplevel
  noise = augment.make_augment(_augment_config(ops="gaussian_noise", noise_std=1.0))
  state = create_train_state(LeNet5(rngs=nnx.Rngs(0)), optax.sgd(0.0), jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"inputs": rng.normal(size=(8, 28, 28, 1)).astype(np.float32),
           "targets": rng.integers(0, 10, 8).astype(np.int32)}
  step = jax.jit(lambda s, b: train_step(s, b, augment=noise))
  losses = []
  for _ in range(3):
    state, metrics = step(state, batch)
    losses.append(float(metrics.compute()["loss"]))
  assert len(set(losses)) == 3
  # And the draw is the step's: the same step of a fresh state draws the same noise.
  fresh = create_train_state(LeNet5(rngs=nnx.Rngs(0)), optax.sgd(0.0), jax.random.key(0))
  assert float(step(fresh, batch)[1].compute()["loss"]) == losses[0]
