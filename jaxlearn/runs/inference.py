"""A finished run as a function: its best weights on new inputs, as probabilities.

`load_predictor(workdir)` loads the run (`jaxlearn.runs.finished`: its config,
preprocessing and best checkpoint, the EMA weights where the run kept them) and returns a
`Predictor`: `predict(inputs)` takes raw inputs (image files, arrays, PIL
images, strings, table rows; see `jaxlearn.runs.inputs`) and returns NumPy
probabilities. The function it compiles takes inputs *as stored* (uint8
pixels, int32 token ids, encoded float features) and does the normalisation
itself, so that `jaxlearn.deploy.export` can ship the same function without jaxlearn.

Outputs per task: classification, softmax probabilities (batch, classes);
binary, the positive class's probability (batch,); regression, the predicted
values (batch,) or (batch, targets).
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlearn.runs import finished, inputs as inputs_lib
from jaxlearn.runs.finished import Run


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
    """Probabilities (or values) for a list of raw inputs (see `jaxlearn.runs.inputs.encode`)."""
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
  """The best checkpoint of the run in `workdir`, ready for `predict(inputs)`.

  >>> import tempfile
  >>> from configs import linreg  # configs/linreg.py: y = x . (2, -3.4) + 4.2 + noise
  >>> from jaxlearn import train_and_evaluate
  >>> workdir = tempfile.mkdtemp()
  >>> _ = train_and_evaluate(linreg.get_config(), workdir)
  >>> predictor = load_predictor(workdir)  # y = x . (2, -3.4) + 4.2 was learnt:
  >>> [round(float(y), 1) for y in predictor.predict([[1.0, 1.0], [0.0, 0.0]])]
  [2.8, 4.2]
  """
  return Predictor(finished.load_run(workdir))


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
