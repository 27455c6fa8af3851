"""Post-training int8 quantization of a finished run, exported to run with int8 products.

Every dense and convolution kernel becomes int8 with one scale per output
channel. Their inputs are quantized too, so that the product itself runs on
int8 operands with int32 accumulation (`preferred_element_type=int32`) and is
rescaled to float after: `int8` fixes one scale per input from the largest
magnitude seen on training batches (static calibration); `int8_weights`
measures it on every example as it comes (dynamic: one scale per example, per
row of a dense layer's input). Everything else (biases, normalisation,
activations, pooling) stays float32.

The rounding is qwix's (scale = max |x| / 127.5, q = round(x / scale) in
[-128, 127]), so a run trained with `config.quantization = "int8_qat"`
(jaxlearn.models.qat) and quantized here with `int8_weights` computes what it trained.

The quantized model is evaluated on the test split beside the model as trained
and written in the artifact format of `jaxlearn.deploy.artifact` (DIR/model.jax holds the int8
kernels, DIR/metadata.json says `"quantization"`); it is called the same way.
"""

import os
from typing import NamedTuple

import jax
from jax.extend import core as jex_core
import jax.numpy as jnp
import numpy as np

from flax import nnx
import ml_collections

from jaxlearn.core.paths import path_name
from jaxlearn.deploy import artifact
from jaxlearn.errors import ConfigError
from jaxlearn.evaluation import analysis, evaluate
from jaxlearn.runs import build, finished, inference

MODES = ("int8", "int8_weights")
_PRODUCTS = ("dot_general", "conv_general_dilated")
_NESTED_JIT = ("jit", "pjit")
CALIBRATION_BATCHES = 8
# The largest magnitude maps to the edge of int8's range (qwix's symmetric bound for int8).
INT8_BOUND = 127.5


class Kernel(NamedTuple):
  """An int8 kernel: q (int8, the kernel's shape) and the per-output-channel scale."""
  q: np.ndarray
  scale: np.ndarray  # float32, one per output channel (the kernel's last axis)


def quantize_kernel(kernel: np.ndarray) -> Kernel:
  """Symmetric per-output-channel int8 (the output channel is the last axis, as in Flax)."""
  kernel = jnp.asarray(kernel, jnp.float32)
  scale = int8_scale(jnp.abs(kernel).max(axis=tuple(range(kernel.ndim - 1))))
  return Kernel(np.asarray(to_int8(kernel, scale)), np.asarray(scale))


def int8_scale(absmax: jax.Array) -> jax.Array:
  """The step between int8 levels for values up to `absmax` (1 where all are ~0)."""
  scale = absmax / INT8_BOUND
  return jnp.where(scale < jnp.sqrt(jnp.finfo(scale.dtype).tiny), 1.0, scale)


def to_int8(x: jax.Array, scale: jax.Array) -> jax.Array:
  return jnp.clip(jnp.round(x / scale), -128, 127).astype(jnp.int8)


class QuantizedModel(NamedTuple):
  fn: callable  # stored inputs -> outputs, with int8 products
  quantized: list[str]  # kernel paths run in int8
  float_bytes: int
  int8_bytes: int


def quantize_run(run: finished.Run, mode: str = "int8",
                 calibration: np.ndarray | None = None) -> QuantizedModel:
  """The run's inference function with its kernels' products in int8 (see the module doc)."""
  if mode not in MODES:
    raise ConfigError(f"--mode={mode!r}; choose one of {MODES}.")
  fn, params = inference.make_inference_fn(_with_float_products(run)), run.state.params
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  names = [path_name(p) for p, _ in leaves]
  example = np.zeros((1, *run.spec.shape), run.spec.dtype)
  # Traced for each input shape: a jaxpr's reshapes and nested jits carry the batch size.
  trace = lambda stored: jax.make_jaxpr(fn)(params, jax.ShapeDtypeStruct(stored.shape,
                                                                         stored.dtype))
  kernels = {i: quantize_kernel(np.asarray(v)) for i, (n, v) in enumerate(zip(names, (
      l for _, l in leaves))) if n.endswith("kernel") and np.ndim(v) >= 2}
  arg_info = [("kernel", i) if i in kernels else None for i in range(len(leaves))] + [None]
  activation_scales = None
  if mode == "int8":
    if calibration is None:
      raise ConfigError("mode='int8' needs calibration inputs (training examples as stored).")
    activation_scales = _calibrate(trace, [l for _, l in leaves], arg_info, calibration)
  used = set()

  def quantized_fn(stored):
    closed = trace(stored)
    args = [l for _, l in leaves] + [stored]
    return _run_jaxpr(closed.jaxpr, closed.consts, args, arg_info, kernels, activation_scales,
                     used)[0]

  jax.eval_shape(quantized_fn, jax.ShapeDtypeStruct(example.shape, example.dtype))
  float_bytes = sum(np.asarray(v).nbytes for _, v in leaves)
  int8_bytes = float_bytes - sum(np.asarray(leaves[i][1]).nbytes - k.q.nbytes - k.scale.nbytes
                                 for i, k in kernels.items() if i in used)
  return QuantizedModel(quantized_fn, [names[i] for i in sorted(used)], float_bytes, int8_bytes)


def _calibrate(trace, leaves, arg_info, calibration) -> dict:
  """max |input| of each quantized product over the calibration batches, keyed by kernel."""
  maxima = {}

  def record(kernel_index, x):
    maxima[kernel_index] = jnp.maximum(maxima.get(kernel_index, 0.0), jnp.max(jnp.abs(x)))

  for start in range(0, len(calibration), 128):
    batch = calibration[start:start + 128]
    closed = trace(batch)
    _run_jaxpr(closed.jaxpr, closed.consts, list(leaves) + [batch], arg_info, None, None, set(),
              record)
  return {k: int8_scale(v) for k, v in maxima.items()}


def _with_float_products(run: finished.Run) -> finished.Run:
  """The run's model without quantization-aware training's fake quantization (if it had it):
  its products are quantized here, as training fake-quantized them."""
  config = ml_collections.ConfigDict(run.config.to_dict())
  config.quantization = "none"
  abstract = nnx.eval_shape(lambda: build.build_model(config, nnx.Rngs(0),
                                                      run.preprocessing["model_dims"]))
  return run._replace(state=run.state.replace(graphdef=nnx.graphdef(abstract)))


def _run_jaxpr(jaxpr, consts, args, arg_info, kernels, activation_scales, used, record=None):
  """Evaluates `jaxpr`; products whose right operand is a kernel run in int8.

  `arg_info` says which arguments are kernels (("kernel", index)); nested jits
  are opened with their arguments' info. With `record`, products run in float
  and their left operands are recorded instead (calibration).
  """
  env, info = {}, {}

  def read(var):
    return var.val if isinstance(var, jex_core.Literal) else env[var]

  for var, value in zip(jaxpr.constvars, consts):
    env[var] = value
  for var, value, meta in zip(jaxpr.invars, args, arg_info):
    env[var], info[var] = value, meta
  for eqn in jaxpr.eqns:
    values = [read(v) for v in eqn.invars]
    metas = [info.get(v) if not isinstance(v, jex_core.Literal) else None for v in eqn.invars]
    name = eqn.primitive.name
    if name in _PRODUCTS and metas[1] is not None and _per_channel_ok(eqn):
      index = metas[1][1]
      if record is not None:
        record(index, values[0])
        outs = _bind(eqn, values)
      else:
        used.add(index)
        scale = None if activation_scales is None else activation_scales[index]
        outs = _int8_product(eqn, values[0], kernels[index], scale)
    elif name in _NESTED_JIT:
      inner = eqn.params["jaxpr"]
      outs = _run_jaxpr(inner.jaxpr, inner.consts, values, metas, kernels, activation_scales,
                       used, record)
    else:
      outs = _bind(eqn, values)
    if not eqn.primitive.multiple_results and name not in _NESTED_JIT:
      outs = [outs]
    for var, value in zip(eqn.outvars, outs):
      env[var] = value
  return [read(v) for v in jaxpr.outvars]


def _per_channel_ok(eqn) -> bool:
  """Whether the kernel's last axis is the output's last axis (Flax's Dense and NHWC Conv)."""
  if eqn.primitive.name == "dot_general":
    (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    rank = len(eqn.invars[1].aval.shape)
    return not rhs_batch and tuple(rhs_contract) == tuple(range(rank - 1))
  numbers = eqn.params["dimension_numbers"]
  out_rank = len(eqn.outvars[0].aval.shape)
  return (eqn.params["feature_group_count"] == 1 and eqn.params["batch_group_count"] == 1
          and numbers.rhs_spec[0] == out_rank - 1 and numbers.out_spec[1] == out_rank - 1)


def _int8_product(eqn, x, kernel: Kernel, static_scale):
  """x (float) times the int8 kernel: int8 operands, int32 accumulation, rescaled to float."""
  if static_scale is not None:
    scale = out_scale = static_scale
  else:
    scale, out_scale = _dynamic_scales(eqn, x)
  params = dict(eqn.params, preferred_element_type=jnp.int32)
  product = eqn.primitive.bind(to_int8(x, scale), jnp.asarray(kernel.q),
                               **_bind_params(eqn.primitive, params))
  return product.astype(jnp.float32) * (out_scale * jnp.asarray(kernel.scale))


def _dynamic_scales(eqn, x):
  """Scales of x measured on x: per example of a convolution's input, per row (every axis
  but the contracted ones) of a dense layer's; shaped for x and for the product."""
  if eqn.primitive.name == "dot_general":
    contracted = tuple(eqn.params["dimension_numbers"][0][0])
    scale = int8_scale(jnp.abs(x).max(axis=contracted, keepdims=True))
    return scale, jnp.squeeze(scale, contracted)[..., None]  # The kernel's axis comes last.
  numbers = eqn.params["dimension_numbers"]
  batch_axis, out_batch_axis = numbers.lhs_spec[0], numbers.out_spec[0]
  scale = int8_scale(jnp.abs(x).max(axis=tuple(a for a in range(x.ndim) if a != batch_axis),
                                    keepdims=True))
  out_shape = [1] * len(eqn.outvars[0].aval.shape)
  out_shape[out_batch_axis] = x.shape[batch_axis]
  return scale, scale.reshape(out_shape)


def _bind(eqn, values):
  return eqn.primitive.bind(*values, **_bind_params(eqn.primitive, eqn.params))


def _bind_params(primitive, params):
  bind_params = primitive.get_bind_params(params)
  if isinstance(bind_params, tuple):  # Older JAX: (sub-functions, params).
    return bind_params[1]
  return bind_params


def quantize_and_export(workdir: str, out_dir: str, mode: str = "int8",
                        data_dir: str = "") -> dict:
  """Quantizes the run, tests both models on the test split, writes the artifact; a report."""
  artifact.check_new(out_dir)
  predictor = inference.load_predictor(workdir)
  run = predictor.run
  calibration = None
  if mode == "int8":
    train_inputs = _training_inputs(run, data_dir)
    calibration = train_inputs[:CALIBRATION_BATCHES * 128]
  model = quantize_run(run, mode, calibration)
  _, stored, targets = evaluate.split_inputs(run, "test", data_dir)
  batch = run.config.eval_batch_size
  float_outputs = evaluate.predict_in_batches(predictor, stored, batch)
  quantized = jax.jit(model.fn)
  int8_outputs = np.concatenate([np.asarray(quantized(stored[i:i + batch]))
                                 for i in range(0, len(stored), batch)])
  batch_dim = jax.export.symbolic_shape("batch")
  exported = jax.export.export(jax.jit(model.fn))(
      jax.ShapeDtypeStruct((*batch_dim, *run.spec.shape), run.spec.dtype))
  metadata = artifact.metadata_for(run, exported, ("cpu",))
  report = {"mode": mode, "quantized_kernels": model.quantized,
            "trained_with": run.config.get("quantization", "none"),
            "trained_test": analysis.headline_score(run.task, targets, float_outputs),
            "int8_test": analysis.headline_score(run.task, targets, int8_outputs),
            "max_probability_difference": float(np.max(np.abs(float_outputs - int8_outputs))),
            "weights_bytes": {"float32": model.float_bytes, "int8": model.int8_bytes}}
  metadata["quantization"] = report
  artifact.write(out_dir, exported, metadata)
  report["artifact_bytes"] = os.path.getsize(os.path.join(out_dir, artifact.MODEL_FILE))
  return report


def _training_inputs(run, data_dir: str = "") -> np.ndarray:
  from jaxlearn.data import pipeline  # pylint: disable=import-outside-toplevel
  raw, (train, _, _) = evaluate.run_data(run, data_dir)
  return pipeline.to_stored(raw.kind, run.preprocessing, train[0][:CALIBRATION_BATCHES * 128])
