"""A finished run as a function: its best weights on new inputs, as probabilities.

`load_predictor(workdir)` reads WORKDIR/config.json, preprocessing.json and the
best checkpoint (the EMA weights where the run kept them) and returns a
`Predictor`: `predict(inputs)` takes raw inputs (image files, arrays, PIL
images, strings, table rows; see `jaxlearn.inputs`) and returns NumPy
probabilities. The function it compiles takes inputs *as stored* (uint8
pixels, int32 token ids, encoded float features) and does the normalisation
itself, so that `jaxlearn.export` can ship the same function without jaxlearn.

Outputs per task: classification, softmax probabilities (batch, classes);
binary, the positive class's probability (batch,); regression, the predicted
values (batch,) or (batch, targets).
"""

import json
import os
from typing import Any, Callable, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlearn import build, checkpoint, inputs as inputs_lib
from jaxlearn import state as state_lib
from jaxlearn.errors import CheckpointError, InputError



class Run(NamedTuple):
  """What inference needs of a finished run: its config, preprocessing and best weights."""
  workdir: str
  config: ml_collections.ConfigDict
  preprocessing: dict
  state: state_lib.TrainState  # params: the weights evaluation used (EMA if kept).

  @property
  def task(self) -> str:
    return self.config.task

  @property
  def spec(self) -> inputs_lib.InputSpec:
    return inputs_lib.InputSpec.from_preprocessing(self.preprocessing)

  def class_names(self) -> list[str]:
    return class_names(self.preprocessing, self.task)


def load_run(workdir: str) -> Run:
  """The run in `workdir`: its config, preprocessing and best checkpoint's weights."""
  config = ml_collections.ConfigDict(_read_json(workdir, "config.json"))
  preprocessing = _read_json(workdir, "preprocessing.json")
  if "model_dims" not in preprocessing or "input" not in preprocessing:
    raise InputError(f"{workdir}/preprocessing.json does not record the model's input; the run "
                     "was trained by an older jaxlearn. Train it again with this version.")
  abstract = nnx.eval_shape(lambda: build.build_model(config, nnx.Rngs(0),
                                                      preprocessing["model_dims"]))
  graphdef, params, model_state = nnx.split(abstract, nnx.Param, ...)
  stored = checkpoint.load_best_arrays(workdir)
  weights = stored.get("ema_params") or stored["params"]
  state = state_lib.TrainState(
      step=jnp.asarray(stored.get("step", 0)), params=_fill(params, weights, workdir),
      model_state=_fill(model_state, stored.get("model_state", {}), workdir), opt_state=(),
      rng=jax.random.key(0), graphdef=graphdef, tx=optax.identity(),
      compute_dtype=build.COMPUTE_DTYPES[config.get("precision", "fp32")])
  return Run(os.path.abspath(workdir), config, preprocessing, state)


def class_names(preprocessing: dict, task: str) -> list[str]:
  """The dataset's class names where it has them, else the class ids as text."""
  names = preprocessing.get("class_names")
  if names:
    return list(names)
  outputs = preprocessing["model_dims"]["num_classes"]
  return [str(c) for c in range(2 if task == "binary" else outputs)]


def make_inference_fn(run: Run) -> Callable[[Any, jax.Array], jax.Array]:
  """`fn(params, stored_inputs) -> probabilities` (pure; jit or export it).

  Images arrive as uint8 pixels and are normalised here with the run's
  mean/std; token ids and table features are used as they are.
  """
  state, task = run.state, run.task
  mean_std = None
  if run.spec.kind == "image":
    mean_std = (jnp.asarray(run.preprocessing["mean"], jnp.float32),
                jnp.asarray(run.preprocessing["std"], jnp.float32))

  def fn(params, stored):
    x = stored
    if mean_std is not None:
      x = (x.astype(jnp.float32) / 255.0 - mean_std[0]) / mean_std[1]
    outputs, _ = state.apply_model(params, x, train=False)
    return to_probabilities(outputs.astype(jnp.float32), task)

  return fn


def to_probabilities(outputs: jax.Array, task: str) -> jax.Array:
  """Model outputs -> what a user reads: class probabilities, P(positive), or values."""
  if task == "classification":
    return jax.nn.softmax(outputs, axis=-1)
  if task == "binary":
    return jax.nn.sigmoid(outputs.reshape(outputs.shape[0]))
  return outputs.reshape(outputs.shape[0]) if outputs.shape[-1] == 1 else outputs


class Predictor:
  """A run's best model on raw inputs. Build with `load_predictor(workdir)`."""

  def __init__(self, run: Run):
    self.run = run
    self.spec = run.spec
    self.task = run.task
    self.class_names = run.class_names()
    self._fn = jax.jit(make_inference_fn(run))

  def predict(self, inputs, invert: bool = False) -> np.ndarray:
    """Probabilities (or values) for a list of raw inputs (see `jaxlearn.inputs.encode`)."""
    stored, _ = inputs_lib.encode_many(inputs, self.spec, invert)
    return self.predict_stored(stored)

  def predict_stored(self, stored: np.ndarray) -> np.ndarray:
    """Probabilities for inputs already as stored (uint8 pixels, token ids, features)."""
    inputs_lib.check_stored(stored, self.spec)
    return np.asarray(self._fn(self.run.state.params, stored))

  def describe(self, outputs: np.ndarray, top_k: int = 3) -> list[dict]:
    """One JSON-able record per example: top-k classes, P(positive), or the value."""
    return describe(outputs, self.task, self.class_names, top_k)


def load_predictor(workdir: str) -> Predictor:
  """The best checkpoint of the run in `workdir`, ready for `predict(inputs)`."""
  return Predictor(load_run(workdir))


def describe(outputs: np.ndarray, task: str, names: list[str], top_k: int = 3) -> list[dict]:
  """Records as `jaxlearn.predict --json` prints them (without the "input" field)."""
  records = []
  for row in np.asarray(outputs):
    if task == "classification":
      order = np.argsort(-row, kind="stable")[:max(1, top_k)]
      records.append({"top": [{"class": int(c), "name": names[c], "probability": float(row[c])}
                              for c in order]})
    elif task == "binary":
      positive = int(row > 0.5)
      records.append({"probability": float(row), "class": positive, "name": names[positive]})
    else:
      records.append({"value": row.tolist() if np.ndim(row) else float(row)})
  return records


def _read_json(workdir: str, name: str) -> dict:
  path = os.path.join(workdir, name)
  if not os.path.isdir(workdir):
    raise InputError(f"--workdir={workdir} does not exist; pass the workdir of a finished "
                     "training run (python -m jaxlearn.main ... --workdir=DIR).")
  if not os.path.exists(path):
    raise InputError(f"{path} not found; {workdir} does not hold a finished training run.")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except ValueError as e:
    raise InputError(f"{path} is not valid JSON ({e}); the workdir is damaged.") from e


def _fill(abstract, stored: dict, workdir: str):
  """`abstract`'s tree with each array taken from `stored` by path; all must be there."""
  flat_stored = {checkpoint.path_name(p): leaf
                 for p, leaf in jax.tree_util.tree_flatten_with_path(stored)[0]}

  def take(path, leaf):
    name = checkpoint.path_name(path)
    if name not in flat_stored or tuple(flat_stored[name].shape) != tuple(leaf.shape):
      raise CheckpointError(
          f"The best checkpoint in {workdir} does not match the model its config.json builds "
          f"({name}: {getattr(flat_stored.get(name), 'shape', 'missing')} stored, "
          f"{tuple(leaf.shape)} built). The workdir is damaged or mixes runs.")
    return jnp.asarray(flat_stored[name], leaf.dtype)

  return jax.tree_util.tree_map_with_path(take, state_lib.pure(abstract))
