"""A finished run loaded back from its workdir: config, preprocessing and best weights.

One piece for everything that reads a finished run: the after-training
commands (evaluate, predict, export, quantize, ensemble, serve), and training
itself when it distils from a teacher run or starts from another run's
weights.
"""

import json
import os
from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxlearn.core import state as state_lib
from jaxlearn.core.paths import path_name
from jaxlearn.errors import CheckpointError, InputError, WorkdirError
from jaxlearn.runs import build, checkpoint, inputs as inputs_lib, workdir as workdir_lib


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
  run_dir = workdir_lib.RunDir(workdir)
  holder = os.path.isdir(workdir) and workdir_lib.training_process(workdir)
  if holder:
    raise WorkdirError(f"{workdir} holds a run that is still training ({holder}); its best "
                       "checkpoint is from an unfinished run. Wait for it to finish (or stop it "
                       "with Ctrl-C), then run this again. Nothing was read or written.")
  config = ml_collections.ConfigDict(
      _read_record(workdir, run_dir.config, ("seed", "task", "eval_batch_size", "model.name",
                                              "data.name")))
  preprocessing = _read_record(workdir, run_dir.preprocessing, ("input.kind", "input.shape",
                                                                "input.dtype", "model_dims"))
  _read_record(workdir, run_dir.preprocessing, _PREPROCESSING_KEYS.get(
      preprocessing["input"]["kind"], ()))
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


# What preprocessing.json holds for each kind of input, beside "input" and "model_dims".
_PREPROCESSING_KEYS = {"image": ("mean", "std"), "text": ("vocabulary", "max_length"),
                       "table": ("columns",)}


def _read_record(workdir: str, path: str, required: tuple[str, ...]) -> dict:
  """The JSON object in `path`, checked to hold the dotted `required` keys that training wrote."""
  value = _read_json(workdir, path)
  if not isinstance(value, dict):
    raise InputError(f"{path} holds a JSON {type(value).__name__}, not the object training "
                     "wrote there; the workdir is damaged. Restore the file from a copy, or "
                     "train again in a new --workdir.")
  missing = []
  for key in required:
    node = value
    for part in key.split("."):
      node = node.get(part) if isinstance(node, dict) else None
    if node is None:
      missing.append(key)
  if missing:
    raise InputError(f"{path} lacks {', '.join(missing)}, which training writes there; the "
                     "workdir is damaged or was written by an older jaxlearn. Restore the file "
                     "from a copy, or train again in a new --workdir.")
  return value


def _read_json(workdir: str, path: str):
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
  flat_stored = {path_name(p): leaf
                 for p, leaf in jax.tree_util.tree_flatten_with_path(stored)[0]}

  def take(path, leaf):
    name = path_name(path)
    if name not in flat_stored or tuple(flat_stored[name].shape) != tuple(leaf.shape):
      raise CheckpointError(
          f"The best checkpoint in {workdir} does not match the model its config.json builds "
          f"({name}: {getattr(flat_stored.get(name), 'shape', 'missing')} stored, "
          f"{tuple(leaf.shape)} built). The workdir is damaged or mixes runs.")
    return jnp.asarray(flat_stored[name], leaf.dtype)

  return jax.tree_util.tree_map_with_path(take, state_lib.pure(abstract))
