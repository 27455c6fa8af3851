"""Per-layer statistics after each epoch: gradient norm, update/weight ratio, dead units.

On one fixed batch of the training split (the same every epoch, so epochs
compare), in inference mode (no dropout, batch-norm running statistics): the
gradient of the loss for each layer's parameters, the update the optimizer
would make from it relative to the weights (healthy training is near 1e-3
per step; far below, the layer barely moves; far above, it thrashes), and the
fraction of the units feeding the layer that are exactly zero for every
example of the batch — ReLUs that never fire ("dead"). The data itself is not
counted as units. One line per epoch in WORKDIR/layer_stats.jsonl,
`{"epoch", "step", "layers": {path: {"grad_norm", "weight_norm",
"update_ratio", "dead_fraction"}}}`, layers in the order the model calls
them; `jaxlearn.runs.diagnosis` reads it. `config.logging.layer_stats`
switches it off; it costs one forward and backward pass per epoch.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlearn import xla_cpu
from jaxlearn.core import paths
from jaxlearn.core.state import TrainState
from jaxlearn.models import summary


def make(task, batch: dict):
  """`stats(state) -> {layer: {...}}` on `batch` (host arrays), compiled once (on a CPU with
  the options of a program run rarely: it compiles in 0.6 s instead of 1.3 s for LeNet-5)."""
  names = []  # the layers in call order, found when the function is traced
  options = xla_cpu.compiler_options("run_once", jax.devices()[0].platform)
  compute = jax.jit(functools.partial(_layer_stats, task=task, names=names),
                    compiler_options=options)
  batch = jax.tree.map(jnp.asarray, batch)

  def stats(state: TrainState) -> dict:
    values = jax.device_get(compute(state, batch))  # a list: a dict's keys would be sorted
    return {layer: {k: float(v) for k, v in entries.items()}
            for layer, entries in zip(names, values)}

  return stats


def _layer_stats(state: TrainState, batch: dict, *, task, names: list) -> list:
  inputs = batch["inputs"]

  called = []  # the layers in call order (the dict returned through grad comes back sorted)

  def loss(params):
    model = nnx.merge(state.graphdef, params, state.model_state)
    outputs, layer_inputs = summary.layer_inputs(model, inputs, train=False)
    called[:] = list(layer_inputs)
    per_example = task.loss(outputs.astype(jnp.float32), batch["targets"])
    return jnp.mean(per_example), layer_inputs

  (_, layer_inputs), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
  updates, _ = state.tx.update(grads, state.opt_state, state.params)
  squares = lambda tree: _by_layer({p: jnp.sum(jnp.square(x.astype(jnp.float32)))
                                    for p, x in _named(tree).items()})
  grad_sq, weight_sq, update_sq = squares(grads), squares(state.params), squares(updates)
  order = called + [layer for layer in grad_sq if layer not in called]
  names[:] = [layer for layer in order if layer in grad_sq]
  stats = []
  for layer in names:
    weight_norm = jnp.sqrt(weight_sq[layer])
    stats.append({
        "grad_norm": jnp.sqrt(grad_sq[layer]),
        "weight_norm": weight_norm,
        "update_ratio": jnp.sqrt(update_sq[layer]) / jnp.maximum(weight_norm, 1e-12),
    })
    if layer_inputs.get(layer) is not None:
      x = layer_inputs[layer]
      never_fires = jnp.all(x.reshape(-1, x.shape[-1]) == 0, axis=0)
      stats[-1]["dead_fraction"] = jnp.mean(never_fires.astype(jnp.float32))
  return stats


def _named(tree) -> dict:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {paths.path_name(path): leaf for path, leaf in flat}


def _by_layer(values: dict) -> dict:
  """'conv1/kernel' and 'conv1/bias' summed into 'conv1'."""
  layers = {}
  for name, value in values.items():
    layer = name.rsplit("/", 1)[0] if "/" in name else name
    layers[layer] = layers.get(layer, 0.0) + value
  return layers


def first_batch(train: dict, batch_size: int) -> dict:
  """The fixed batch the statistics are computed on: the train split's first examples."""
  return {k: np.asarray(v[:batch_size]) for k, v in train.items()}


def append(path: str, epoch: int, step: int, stats: dict) -> None:
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps({"epoch": epoch, "step": step, "layers": stats}) + "\n")
