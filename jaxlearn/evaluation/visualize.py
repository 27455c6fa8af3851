"""Inside an image model: its first filters, each convolution's feature maps, and saliency.

CS231n's pictures of a trained network, for a finished run: the first
convolution's kernels as a grid; every convolution's feature maps for a few
test images; and which pixels a prediction depends on — saliency as
integrated gradients (Sundararajan et al. 2017: the path integral of the
gradient from a baseline, here the dataset's mean image) or gradient × input,
and for a CNN Grad-CAM (Selvaraju et al. 2017: the last convolution's maps
that are more than 1x1, weighted by the class score's mean gradient over each) — for correctly
classified and for mistaken test images side by side. Everything is computed
on the model as evaluation sees it (`train=False`), on normalised inputs.
"""

import dataclasses
import os

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxlearn.errors import InputError
from jaxlearn.models import summary
from jaxlearn.runs import tracking
from jaxlearn.runs.workdir import RunDir

SALIENCY_METHODS = ("integrated_gradients", "gradient_x_input")


@dataclasses.dataclass(frozen=True)
class Pictures:
  """What `visualize` draws, as arrays (the tests read these)."""
  images: np.ndarray  # (n, h, w, c), the stored test images shown
  targets: np.ndarray
  predicted: np.ndarray
  correct: np.ndarray  # bool per image
  filters: tuple[str, np.ndarray] | None  # (layer, kernel (kh, kw, cin, cout)) of the first conv
  feature_maps: dict  # conv layer -> (n, h', w', c') outputs
  saliency: np.ndarray  # (n, h, w), non-negative
  grad_cam: tuple[str, np.ndarray] | None  # (layer, (n, h, w) in [0, 1]) for a CNN


def convolutions(model, example) -> list[str]:
  """The paths of the model's convolutions, in the order it calls them."""
  table = summary.summarize(model, example, flops=False, train=False)
  return [layer.path for layer in table.layers if layer.type == "Conv"]


def class_scores(outputs, classes):
  """Each example's output for its class (a binary model's one logit)."""
  outputs = outputs.astype(jnp.float32)
  if outputs.shape[-1] == 1:
    return outputs[:, 0]
  return jnp.take_along_axis(outputs, classes[:, None], axis=-1)[:, 0]


def logit_of(model, x, classes):
  return class_scores(model(x, train=False), classes)


def saliency(model, x, classes, method: str = "integrated_gradients", baseline=None,
             steps: int = 32) -> jax.Array:
  """Attributions of each example's class score to its input values, shaped like `x`.

  Integrated gradients: (x - baseline) times the mean gradient along the straight
  path from the baseline (zeros: the mean image, for normalised inputs) to x;
  their sum is the score at x minus at the baseline. Gradient × input: x times
  the gradient at x.
  """
  if method not in SALIENCY_METHODS:
    raise ValueError(f"Saliency method {method!r}; choose one of {SALIENCY_METHODS}.")
  total = lambda inputs: jnp.sum(logit_of(model, inputs, classes))
  gradient = jax.grad(total)
  if method == "gradient_x_input":
    return x * gradient(x)
  baseline = jnp.zeros_like(x) if baseline is None else baseline
  alphas = (jnp.arange(steps) + 0.5) / steps  # the midpoint rule
  path_gradients = jax.lax.map(lambda a: gradient(baseline + a * (x - baseline)), alphas)
  return (x - baseline) * jnp.mean(path_gradients, axis=0)


def grad_cam(model, x, classes, layer: str) -> jax.Array:
  """Grad-CAM at `layer`: ReLU(sum_k alpha_k A_k), A_k its k-th map rectified (the ReLU after
  it) and alpha_k the class score's mean gradient over that map's output; (n, h', w'), each
  example scaled to a maximum of 1."""
  _, outputs = summary.layer_outputs(nnx.clone(model), x, train=False)
  maps = outputs[layer]
  score = lambda offset: jnp.sum(logit_of_offset(model, x, classes, layer, offset))
  gradients = jax.grad(score)(jnp.zeros_like(maps))
  weights = jnp.mean(gradients, axis=(1, 2), keepdims=True)
  # The maps as the next layer sees them after the convolution's ReLU (a zoo CNN's layers
  # return pre-activations): a unit that does not fire contributes nothing.
  cam = jax.nn.relu(jnp.sum(weights * jax.nn.relu(maps), axis=-1))
  return cam / jnp.maximum(jnp.max(cam, axis=(1, 2), keepdims=True), 1e-12)


def logit_of_offset(model, x, classes, layer: str, offset):
  """`logit_of` with `offset` added to `layer`'s output: its gradient is the output's."""
  return class_scores(summary.call_with_output_offset(nnx.clone(model), layer, offset, x,
                                                      train=False), classes)


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
  """(n, h', w') -> (n, height, width), bilinear."""
  return np.asarray(jax.image.resize(jnp.asarray(maps), (maps.shape[0], height, width),
                                     "bilinear"))


def choose(correct: np.ndarray, count: int) -> np.ndarray:
  """Up to `count` correctly classified and `count` mistaken examples, correct ones first."""
  right, wrong = np.flatnonzero(correct)[:count], np.flatnonzero(~correct)[:count]
  return np.concatenate([right, wrong])


def pictures(model, normalise, stored: np.ndarray, targets: np.ndarray,
             probabilities: np.ndarray, count: int, method: str) -> Pictures:
  """Everything `draw` shows, for `count` correct and `count` mistaken examples of `stored`."""
  predicted = (probabilities[:, 0] > 0.5).astype(np.int64) if probabilities.shape[-1] == 1 \
      else probabilities.argmax(-1)
  targets = np.asarray(targets).reshape(len(targets), -1)[:, 0].astype(np.int64)
  chosen = choose(predicted == targets, count)
  images, x = stored[chosen], normalise(stored[chosen])
  classes = jnp.asarray(predicted[chosen])
  convs = convolutions(model, x[:1])
  filters = None
  if convs:
    filters = (convs[0], np.asarray(summary.module_at(model, convs[0]).kernel.get_value()))
  _, outputs = summary.layer_outputs(nnx.clone(model), x, train=False)
  maps = {path: np.asarray(outputs[path]) for path in convs}
  attributions = np.abs(np.asarray(saliency(model, x, classes, method))).sum(axis=-1)
  # Grad-CAM at the last convolution whose maps still have a layout (LeNet's conv3 is 1x1).
  spatial = [path for path in convs if np.prod(maps[path].shape[1:3]) > 1]
  cam = None
  if spatial:
    height, width = x.shape[1:3]
    cam = (spatial[-1], upsample(np.asarray(grad_cam(model, x, classes, spatial[-1])), height,
                                 width))
  return Pictures(images, targets[chosen], predicted[chosen], predicted[chosen] == targets[chosen],
                  filters, maps, attributions, cam)


def draw(pictures_: Pictures, out_dir: str, class_names: list[str], method: str) -> list[str]:
  """filters.png, feature_maps.png and saliency.png in `out_dir`; returns the paths."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  os.makedirs(out_dir, exist_ok=True)
  written = []
  p = pictures_
  name = lambda c: class_names[c] if c < len(class_names) else str(c)

  def show(ax, image, cmap="gray", title=""):
    ax.imshow(image, cmap=cmap)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
      ax.set_title(title, fontsize=7)

  if p.filters is not None:
    layer, kernel = p.filters
    count = kernel.shape[-1]
    columns = min(count, 8)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.2 * rows + 0.4),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
      ax.axis("off")
      if k < count:
        tile = kernel[..., k]
        tile = tile if tile.shape[-1] == 3 else tile.mean(axis=-1)
        tile = (tile - tile.min()) / max(np.ptp(tile), 1e-12)
        show(ax, tile, title=str(k))
    fig.suptitle(f"{layer}: its {count} filters ({kernel.shape[0]}x{kernel.shape[1]})")
    written.append(_save(fig, plt, os.path.join(out_dir, "filters.png")))

  layers = [layer for layer, maps in p.feature_maps.items() if np.prod(maps.shape[1:3]) > 1]
  if layers:  # 1x1 maps (LeNet's conv3) are single numbers, not pictures
    shown = min(len(p.images), 4)
    columns = 1 + min(8, max(p.feature_maps[layer].shape[-1] for layer in layers))
    fig, axes = plt.subplots(shown * len(layers), columns,
                             figsize=(1.1 * columns, 1.1 * shown * len(layers) + 0.4),
                             squeeze=False)
    for i in range(shown):
      for j, layer in enumerate(layers):
        row = axes[i * len(layers) + j]
        for ax in row:
          ax.axis("off")
        show(row[0], _displayable(p.images[i]), title=f"{layer}" if j else f"image {i}")
        maps = p.feature_maps[layer][i]
        for k in range(min(columns - 1, maps.shape[-1])):
          show(row[k + 1], maps[..., k], cmap="viridis", title=f"{layer} #{k}" if i == 0 and j == 0
               else "")
    fig.suptitle("Feature maps of each convolution larger than 1x1 (first channels)")
    written.append(_save(fig, plt, os.path.join(out_dir, "feature_maps.png")))

  columns = 3 if p.grad_cam is not None else 2
  fig, axes = plt.subplots(len(p.images), columns, figsize=(2.0 * columns, 2.0 * len(p.images)),
                           squeeze=False)
  for i, row in enumerate(axes):
    verdict = "correct" if p.correct[i] else "mistaken"
    show(row[0], _displayable(p.images[i]),
         title=f"{verdict}: {name(p.targets[i])} -> {name(p.predicted[i])}")
    show(row[1], p.saliency[i], cmap="hot", title=method.replace("_", " "))
    if p.grad_cam is not None:
      show(row[2], _displayable(p.images[i]), title=f"Grad-CAM ({p.grad_cam[0]})")
      row[2].imshow(p.grad_cam[1][i], cmap="jet", alpha=0.45)
  fig.tight_layout()
  written.append(_save(fig, plt, os.path.join(out_dir, "saliency.png")))
  return written


def _displayable(image: np.ndarray) -> np.ndarray:
  return image[..., 0] if image.shape[-1] == 1 else image


def _save(fig, plt, path: str) -> str:
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def visualize_run(workdir: str, count: int = 4, method: str = "integrated_gradients",
                  split: str = "test", data_dir: str = "") -> list[str]:
  """Draws the run's pictures into WORKDIR/visualize/ and its TensorBoard; returns the files."""
  # pylint: disable=import-outside-toplevel
  from jaxlearn.evaluation import evaluate
  from jaxlearn.runs import inference
  predictor = inference.load_predictor(workdir)
  run = predictor.run
  if run.spec.kind != "image" or run.task == "regression":
    raise InputError(f"jaxlearn.visualize draws image classifiers; the run in {workdir} is a "
                     f"{run.task} model of {run.spec.kind} inputs. For any model, "
                     "python -m jaxlearn.summary shows its layers and python -m "
                     "jaxlearn.diagnose what went wrong in training.")
  _, stored, targets = evaluate.split_inputs(run, split, data_dir)
  stored, targets = stored[:EXAMPLES_SEARCHED], targets[:EXAMPLES_SEARCHED]
  probabilities = evaluate.predict_in_batches(predictor, stored, run.config.eval_batch_size)
  model = nnx.merge(run.state.graphdef, run.state.params, run.state.model_state)
  mean = np.asarray(run.preprocessing["mean"], np.float32)
  std = np.asarray(run.preprocessing["std"], np.float32)
  normalise = lambda pixels: jnp.asarray((pixels.astype(np.float32) / 255.0 - mean) / std)
  drawn = pictures(model, normalise, stored, targets, probabilities, count, method)
  written = draw(drawn, RunDir(workdir).visualize, predictor.class_names, method)
  _to_tensorboard(RunDir(workdir).tensorboard, written)
  return written


# Test examples predicted to find mistakes among (a few hundred hold some for any real model).
EXAMPLES_SEARCHED = 2000


def _to_tensorboard(directory: str, pngs: list[str]) -> None:
  import matplotlib.image  # pylint: disable=import-outside-toplevel
  writer = tracking.import_tensorboardx().SummaryWriter(directory)
  try:
    for path in pngs:
      image = matplotlib.image.imread(path)[..., :3]
      writer.add_image(f"visualize/{os.path.splitext(os.path.basename(path))[0]}", image,
                       dataformats="HWC")
  finally:
    writer.close()
