"""Pictures of an image model: saliency where the model looks, Grad-CAM by hand, what is drawn."""

import os
import shutil
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlearn.evaluation import visualize
from jaxlearn.models import LeNet5
from tests.conftest import PROJECT_ROOT

PATCH = (slice(2, 5), slice(3, 6))  # rows 2-4, columns 3-5 of an 8x8 image


class PatchLinear(nnx.Module):
  """A linear classifier of 8x8 images whose weights are zero outside PATCH."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.linear = nnx.Linear(64, 3, rngs=rngs)
    mask = np.zeros((8, 8), np.float32)
    mask[PATCH] = 1
    kernel = self.linear.kernel.get_value() * mask.reshape(64, 1)
    self.linear.kernel.set_value(kernel)

  def __call__(self, x, *, train: bool = False, rngs=None):
    del train, rngs
    return self.linear(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("method", visualize.SALIENCY_METHODS)
def test_saliency_of_a_model_that_looks_at_one_patch_is_all_in_that_patch(method):
  model = PatchLinear(rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (5, 8, 8, 1))
  attributions = np.abs(np.asarray(visualize.saliency(model, x, jnp.array([0, 1, 2, 0, 1]),
                                                      method)))[..., 0]
  outside = attributions.copy()
  outside[:, PATCH[0], PATCH[1]] = 0
  assert np.all(outside == 0)
  assert np.all(attributions[:, PATCH[0], PATCH[1]].sum(axis=(1, 2)) > 0)


def test_integrated_gradients_add_up_to_the_score_above_the_baseline():
  """IG's completeness: the attributions sum to f(x) - f(baseline), for a nonlinear CNN too."""
  model = LeNet5(rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (3, 28, 28, 1))
  classes = jnp.array([1, 4, 7])
  attributions = visualize.saliency(model, x, classes, "integrated_gradients", steps=128)
  gained = visualize.logit_of(model, x, classes) - visualize.logit_of(model, 0 * x, classes)
  np.testing.assert_allclose(np.sum(attributions, axis=(1, 2, 3)), gained, rtol=0.02, atol=1e-3)


class TinyCNN(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(1, 2, (3, 3), padding="VALID", rngs=rngs)
    self.head = nnx.Linear(6 * 6 * 2, 3, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs=None):
    del train, rngs
    return self.head(self.conv(x).reshape(x.shape[0], -1))


def test_grad_cam_equals_its_definition_worked_out_by_hand():
  model = TinyCNN(rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(3), (6, 8, 8, 1))
  maps = np.asarray(model.conv(x))  # A: (6, 6, 6, 2)
  kernel = np.asarray(model.head.kernel.get_value()).reshape(6, 6, 2, 3)
  drawn = 0
  for c in range(3):
    cam = np.asarray(visualize.grad_cam(model, x, jnp.full(6, c), "conv"))
    for i in range(6):
      # The score is sum(A * W_c) + b, so its gradient at A is W_c; alpha_k averages it over A_k.
      alpha = kernel[..., c].mean(axis=(0, 1))
      expected = np.maximum((np.maximum(maps[i], 0) * alpha).sum(axis=-1), 0)
      drawn += expected.max() > 0
      np.testing.assert_allclose(cam[i], expected / max(expected.max(), 1e-12), rtol=1e-4,
                                 atol=1e-6)
  assert drawn >= 6  # many of the 18 maps are not blank, so the comparison means something


@pytest.mark.slow
def test_a_runs_pictures_have_the_shapes_and_counts_of_its_layers(finished_runs, tmp_path):
  workdir = tmp_path / "lenet"
  shutil.copytree(finished_runs["lenet"], workdir)
  result = subprocess.run([sys.executable, "-m", "jaxlearn.visualize", f"--workdir={workdir}",
                           "--num_images=3"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(workdir / "visualize")) == ["feature_maps.png", "filters.png",
                                                       "saliency.png"]
  events = [f for f in os.listdir(workdir / "tensorboard") if "tfevents" in f]
  assert len(events) == 2  # training's and the pictures'
  from jaxlearn.evaluation import evaluate  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs import inference  # pylint: disable=import-outside-toplevel
  predictor = inference.load_predictor(str(workdir))
  _, stored, targets = evaluate.split_inputs(predictor.run, "test")
  probabilities = evaluate.predict_in_batches(predictor, stored, 80)
  model = nnx.merge(predictor.run.state.graphdef, predictor.run.state.params,
                    predictor.run.state.model_state)
  drawn = visualize.pictures(model, lambda s: jnp.asarray(s, jnp.float32) / 255, stored, targets,
                             probabilities, 3, "gradient_x_input")
  assert list(drawn.correct) == [True] * 3 + [False] * 3  # 20% label noise: mistakes exist
  assert drawn.filters[0] == "conv1" and drawn.filters[1].shape == (5, 5, 1, 6)
  assert {k: v.shape for k, v in drawn.feature_maps.items()} == {
      "conv1": (6, 28, 28, 6), "conv2": (6, 10, 10, 16), "conv3": (6, 1, 1, 120)}
  assert drawn.saliency.shape == (6, 28, 28) and np.all(drawn.saliency >= 0)
  # Grad-CAM at the last convolution with a spatial layout: conv3's maps are 1x1.
  assert drawn.grad_cam[0] == "conv2" and drawn.grad_cam[1].shape == (6, 28, 28)
  assert drawn.grad_cam[1].min() >= 0 and drawn.grad_cam[1].max() <= 1 + 1e-6


def test_a_text_model_is_refused_naming_what_to_use(finished_runs):
  result = subprocess.run([sys.executable, "-m", "jaxlearn.visualize",
                           f"--workdir={finished_runs['text']}"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert "draws image classifiers" in result.stderr and "jaxlearn.summary" in result.stderr
