"""What is inside a model: every layer's output shape, parameters, FLOPs and activation memory.

The columns of Keras' `model.summary()` and torchinfo, for any Flax NNX
module. The model runs abstractly (`jax.eval_shape`: nothing is computed)
while every layer's `__call__` records what it returned; each layer's call is
then lowered on its own for XLA's cost analysis. FLOPs are XLA's count: 2 per
multiply-add with the input (a padded convolution's taps on the padding are
not counted), 1 per elementwise operation such as a bias add; the model's own
row also counts what runs between layers (activations, pooling). A recurrent
cell's row is one step; its `nnx.RNN` counts every step.

  >>> from flax import nnx
  >>> from jaxlearn.models import MLP
  >>> table = summarize(MLP(hidden=(128,), rngs=nnx.Rngs(0)), jnp.zeros((1, 28, 28, 1)))
  >>> [(layer.path, layer.output_shapes[0].shape, layer.params) for layer in table.layers]
  [('', (1, 10), 101770), ('hidden/0', (1, 128), 100480), ('dropout', (1, 128), 0), ('head', (1, 10), 1290)]
  >>> table.flops  # 2 * 784 * 128 + 128, the ReLU's 128, 2 * 128 * 10 + 10
  203530
"""

import contextlib
import dataclasses
import itertools
import math

from flax import nnx
import jax
import jax.numpy as jnp

from jaxlearn.core import paths as paths_lib


@dataclasses.dataclass(frozen=True)
class Layer:
  """One row: a module (path '' is the model itself) and what its call produced."""
  path: str
  type: str
  output_shapes: tuple  # one jax.ShapeDtypeStruct per output array
  params: int  # the parameters of this layer and of the layers inside it
  flops: int | None = None
  backward_flops: int | None = None

  @property
  def depth(self) -> int:
    return self.path.count("/") + 1 if self.path else 0

  @property
  def activation_bytes(self) -> int:
    return sum(math.prod(s.shape) * jnp.dtype(s.dtype).itemsize for s in self.output_shapes)


@dataclasses.dataclass(frozen=True)
class Counts:
  """How many values of one kind the model holds, and their bytes."""
  count: int = 0
  bytes: int = 0


@dataclasses.dataclass(frozen=True)
class ModelSummary:
  """The layers of one model on one input, with totals; `str()` is the printed table."""
  model: str
  input_shapes: tuple  # jax.ShapeDtypeStruct per input array
  layers: tuple  # of Layer, in call order (the model first)
  trainable: Counts
  frozen: Counts  # parameters matching the freeze patterns
  non_trainable: Counts  # model state such as batch-norm statistics

  @property
  def flops(self) -> int | None:
    return self.layers[0].flops

  @property
  def backward_flops(self) -> int | None:
    return self.layers[0].backward_flops

  @property
  def activation_bytes(self) -> int:
    """The outputs of the innermost layers: what a backward pass keeps, per batch."""
    leaves = [l for l in self.layers
              if not any(o.path.startswith(l.path + "/") or (not l.path and o.path)
                         for o in self.layers)]
    return sum(l.activation_bytes for l in leaves)

  def table(self, max_depth: int | None = None) -> str:
    return render(self, max_depth)

  def __str__(self) -> str:
    return render(self)


def summarize(model: nnx.Module, *inputs, freeze=(), flops: bool = True,
              backward: bool = False, **call_kwargs) -> ModelSummary:
  """The summary of `model(*inputs, **call_kwargs)` (e.g. `train=False`).

  `inputs` may be arrays or `jax.ShapeDtypeStruct`s: only their shapes are
  used. `freeze` are parameter patterns (as `config.freeze`) counted as frozen.
  `flops` lowers each layer for XLA's FLOP count; `backward` also counts each
  layer's backward pass (the gradients of its parameters and float inputs).
  """
  abstract_inputs = tuple(_abstract(x) for x in inputs)
  calls = _record_calls(model, abstract_inputs, call_kwargs)
  modules = dict(_modules(model))
  layers, costs = [], {}
  for call in calls:
    module = modules[call.path]
    forward = backward_cost = None
    if flops:  # Layers alike (ResNet's blocks of one stage) are lowered once.
      alike = (nnx.graphdef(module), tuple(map(str, call.leaves)), call.treedef,
               frozenset(call.data))
      if alike not in costs:
        costs[alike] = _layer_flops(module, call, backward)
      forward, backward_cost = costs[alike]
    layers.append(Layer(path=call.path, type=type(module).__name__,
                        output_shapes=call.outputs, params=_size(_params(module)),
                        flops=forward, backward_flops=backward_cost))
  if flops:
    layers = _with_every_step_counted(layers, calls, modules)
  trainable, frozen = _split_params(model, freeze)
  return ModelSummary(model=type(model).__name__, input_shapes=abstract_inputs,
                      layers=tuple(layers), trainable=trainable, frozen=frozen,
                      non_trainable=_counts(jax.tree.leaves(_model_state(model))))


@dataclasses.dataclass
class _Call:
  """A layer's call as recorded: its arguments (flattened, arrays abstract) and outputs."""
  order: int
  path: str
  leaves: list
  treedef: object
  data: set  # which of `leaves` are the model's own inputs
  outputs: tuple = ()
  values: list | None = None  # the arguments themselves, when asked for (`layer_inputs`)
  output_values: list | None = None  # and the outputs
  has_params: bool = False


def _modules(model):
  """(path, module) for the model ('') and every module inside it."""
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Module):
      yield "/".join(str(p) for p in path), node


# The attribute that tells a module its path, even as a copy inside a transform (nnx.scan).
_PATH = "_jaxlearn_summary_path"


def _record_calls(model, inputs, call_kwargs) -> list[_Call]:
  """Every module's first call while the model runs on `inputs`, in the order they began."""
  labelled = nnx.clone(model)
  for path, module in _modules(labelled):
    setattr(module, _PATH, path)
  graphdef, state = nnx.split(labelled)
  classes = {type(module) for _, module in _modules(model)}
  calls = []

  def forward(state, inputs):
    model_inputs = {id(leaf) for leaf in jax.tree.leaves(inputs)}
    with _recording(classes, model_inputs, calls):
      return nnx.merge(graphdef, state)(*inputs, **call_kwargs)

  jax.eval_shape(forward, state, inputs)
  return sorted(calls, key=lambda c: c.order)


def module_at(model, path: str) -> nnx.Module:
  """The module at `path` ('' for the model), as the summary names it ('blocks/0/conv1')."""
  modules = dict(_modules(model))
  if path not in modules:
    raise KeyError(f"No layer {path!r} in {type(model).__name__}; it has {sorted(modules)}.")
  return modules[path]


def _direct_calls(model, inputs, call_kwargs) -> tuple[object, list]:
  """Runs the model, keeping the arguments and outputs of each of its own modules' calls."""
  modules = list(_modules(model))
  for path, module in modules:
    setattr(module, _PATH, path)
  calls = []
  with _recording({type(m) for _, m in modules}, {id(x) for x in jax.tree.leaves(inputs)}, calls,
                  direct={id(m) for _, m in modules}):
    outputs = model(*inputs, **call_kwargs)
  return outputs, sorted(calls, key=lambda c: c.order)


def layer_outputs(model, *inputs, **call_kwargs) -> tuple[object, dict]:
  """`model(*inputs, **call_kwargs)` and each layer's first output array: {path: array}, in
  call order (feature maps). Eagerly or under `jax.jit`; it labels `model`'s modules, so pass
  a copy (`nnx.clone`). Layers run inside a transform (an RNN's cell) are left out."""
  outputs, calls = _direct_calls(model, inputs, call_kwargs)
  return outputs, {c.path: c.output_values[0] for c in calls
                   if c.values is not None and c.output_values}


def call_with_output_offset(model, path: str, offset, *inputs, **call_kwargs):
  """`model(*inputs, **call_kwargs)` with `offset` added to the output of the layer at `path`:
  the gradient with respect to `offset` (at zero) is the gradient at that output (Grad-CAM)."""
  target = module_at(model, path)
  cls = type(target)
  saved = cls.__dict__.get("__call__")
  original = cls.__call__

  def offset_call(self, *args, **kwargs):
    outputs = original(self, *args, **kwargs)
    return outputs + offset if self is target else outputs

  cls.__call__ = offset_call
  try:
    return model(*inputs, **call_kwargs)
  finally:
    if saved is None:
      del cls.__call__
    else:
      cls.__call__ = saved


def layer_inputs(model, *inputs, **call_kwargs) -> tuple[object, dict]:
  """`model(*inputs, **call_kwargs)`, and each layer with parameters (in call order) with its
  first float input that is not the data (see `_recording`), or None: {path: array | None},
  e.g. to see which units feed a layer only zeros. Works eagerly and under `jax.jit`; it labels `model`'s modules, so pass a copy
  (a merged one). Layers run inside a transform (an RNN's cell, per step) are left out."""
  outputs, calls = _direct_calls(model, inputs, call_kwargs)
  found = {}
  for call in calls:
    floats = [x for i, x in enumerate(call.values or []) if i not in call.data
              and hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)]
    if call.has_params and call.values is not None:
      found[call.path] = floats[0] if floats else None
  return outputs, found


@contextlib.contextmanager
def _recording(classes, model_inputs: set, calls: list, direct: set | None = None):
  """Wraps each class's `__call__` to append a `_Call` to `calls`; restores them after.

  `model_inputs` are the ids of the model's own input arrays: a layer is not
  differentiated with respect to those, nor with respect to any input of the
  layers that run before a layer with parameters has (the data, perhaps
  reshaped: it needs no gradient). With `direct` (the ids of the model's own
  modules) each call of one of those also keeps its arguments' values.
  """
  counter = itertools.count()
  recorded, running = set(), []
  parameters_used = []  # becomes [True] once a layer with parameters has run
  saved = {cls: cls.__dict__.get("__call__") for cls in classes}

  def wrap(original):
    def recording_call(self, *args, **kwargs):
      path = getattr(self, _PATH, None)
      # An inherited __call__ is wrapped once per class: record the outermost only.
      if path is None or path in recorded or (running and running[-1] == id(self)):
        return original(self, *args, **kwargs)
      leaves, treedef = jax.tree.flatten((args, kwargs))
      data = {i for i, leaf in enumerate(leaves)
              if id(leaf) in model_inputs or (not parameters_used and hasattr(leaf, "dtype"))}
      call = _Call(next(counter), path, [_abstract(x) for x in leaves], treedef, data,
                   values=list(leaves) if direct is not None and id(self) in direct else None,
                   has_params=bool(jax.tree.leaves(_params(self))))
      recorded.add(path)
      running.append(id(self))
      try:
        outputs = original(self, *args, **kwargs)
      finally:
        running.pop()
      call.outputs = tuple(_abstract(x) for x in jax.tree.leaves(outputs) if hasattr(x, "shape"))
      if call.values is not None:
        call.output_values = [x for x in jax.tree.leaves(outputs) if hasattr(x, "shape")]
      if not parameters_used and call.has_params:
        parameters_used.append(True)
      calls.append(call)
      return outputs
    return recording_call

  for cls in classes:
    cls.__call__ = wrap(cls.__call__)
  try:
    yield
  finally:
    for cls, original in saved.items():
      if original is None:
        del cls.__call__
      else:
        cls.__call__ = original


def _layer_flops(module, call: _Call, backward: bool) -> tuple[int | None, int | None]:
  """XLA's FLOPs of the recorded call of `module`, and of its backward pass alone (the
  gradients of its parameters and of its float inputs other than the model's data)."""
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  leaves = call.leaves
  arrays = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.ShapeDtypeStruct)]
  floats = [i for i in arrays
            if jnp.issubdtype(leaves[i].dtype, jnp.inexact) and i not in call.data]

  def run(params, rest, values: dict):
    args, kwargs = jax.tree.unflatten(call.treedef, [values.get(i, leaf)
                                                     for i, leaf in enumerate(leaves)])
    return type(module).__call__(nnx.merge(graphdef, params, rest), *args, **kwargs)

  def forward(params, rest, *xs):
    return run(params, rest, dict(zip(arrays, xs)))

  inputs = [leaves[i] for i in arrays]
  forward_flops = _flops(forward, params, rest, *inputs)
  if not backward or forward_flops is None:
    return forward_flops, None

  def with_gradients(params, rest, *xs):
    fixed = dict(zip(arrays, xs))
    differentiable = lambda p, fs: run(p, rest, {**fixed, **dict(zip(floats, fs))})
    outputs, pullback = jax.vjp(differentiable, params, [fixed[i] for i in floats])
    # The outputs too, so that the forward pass is counted in full here as well.
    return outputs, pullback(jax.tree.map(jnp.ones_like, outputs))

  both = _flops(with_gradients, params, rest, *inputs)
  return forward_flops, None if both is None else max(both - forward_flops, 0)


def _with_every_step_counted(layers: list, calls: list, modules: dict) -> list:
  """XLA's cost analysis counts a loop's body once: an `nnx.RNN` runs its cell once per
  step (`unroll` steps per body), so it and the layers around it gain the steps not
  counted times the cell's FLOPs (the cell's own row is one step)."""
  by_path = {layer.path: layer for layer in layers}
  extra = {}  # path -> (forward, backward) FLOPs to add
  for call in calls:
    module = modules[call.path]
    cell = by_path.get(f"{call.path}/cell" if call.path else "cell")
    if not isinstance(module, nnx.RNN) or cell is None or cell.flops is None:
      continue
    steps = call.leaves[0].shape[0 if module.time_major else 1]
    unrolled = steps if module.unroll is True else min(int(module.unroll), steps)
    forward = (steps - unrolled) * cell.flops
    backward = (steps - unrolled) * (cell.backward_flops or 0)
    parts = call.path.split("/") if call.path else []
    for path in ["/".join(parts[:i]) for i in range(len(parts) + 1)]:  # it and its parents
      f, b = extra.get(path, (0, 0))
      extra[path] = (f + forward, b + backward)
  counted = lambda n, add: None if n is None else n + add
  return [dataclasses.replace(
      layer, flops=counted(layer.flops, extra.get(layer.path, (0, 0))[0]),
      backward_flops=counted(layer.backward_flops, extra.get(layer.path, (0, 0))[1]))
      for layer in layers]


def _flops(fn, *args) -> int | None:
  cost = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(cost, (list, tuple)):  # One entry per computation in older JAX versions.
    cost = cost[0] if cost else None
  return None if cost is None else int(cost.get("flops", 0))


def _abstract(x):
  return jax.ShapeDtypeStruct(jnp.shape(x), x.dtype) if hasattr(x, "dtype") else x


def _params(module):
  return nnx.state(module, nnx.Param)


def _model_state(module):
  """Variables that are neither parameters nor random-number state (batch-norm statistics)."""
  return nnx.state(module, nnx.Not(nnx.Any(nnx.Param, nnx.RngState)))


def _size(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def _counts(leaves) -> Counts:
  return Counts(sum(int(x.size) for x in leaves),
                sum(int(x.size) * x.dtype.itemsize for x in leaves))


def _split_params(model, freeze) -> tuple[Counts, Counts]:
  flat = jax.tree_util.tree_flatten_with_path(_params(model))[0]
  frozen = [leaf for path, leaf in flat if paths_lib.matches(paths_lib.path_name(path), freeze)]
  trainable = [leaf for path, leaf in flat
               if not paths_lib.matches(paths_lib.path_name(path), freeze)]
  return _counts(trainable), _counts(frozen)


def shape_text(s) -> str:
  """'float32[1,28,28,6]'."""
  return f"{jnp.dtype(s.dtype).name}[{','.join(str(d) for d in s.shape)}]"


def bytes_text(n: int) -> str:
  for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= size:
      return f"{n / size:.1f} {unit}"
  return f"{n} B"


def _number(n: int | None) -> str:
  return "" if n is None else f"{n:,}"


def render(summary: ModelSummary, max_depth: int | None = None) -> str:
  """The table (Keras' and torchinfo's columns) with the totals beneath it."""
  with_backward = summary.backward_flops is not None
  header = ["layer", "type", "output shape", "params", "FLOPs"] + (
      ["backward FLOPs"] if with_backward else []) + ["activations"]
  rows = []
  for layer in summary.layers:
    if max_depth is not None and layer.depth > max_depth:
      continue
    rows.append([layer.path or "(model)", layer.type,
                 " ".join(shape_text(s) for s in layer.output_shapes), _number(layer.params),
                 _number(layer.flops)] + ([_number(layer.backward_flops)] if with_backward
                                          else []) + [bytes_text(layer.activation_bytes)])
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  right = {"params", "FLOPs", "backward FLOPs", "activations"}
  line = lambda cells: "  ".join(c.rjust(w) if h in right else c.ljust(w)
                                 for c, w, h in zip(cells, widths, header)).rstrip()
  rule = "-" * len(line(header))
  inputs = ", ".join(shape_text(s) for s in summary.input_shapes)
  lines = [f"{summary.model} on {inputs}", rule, line(header), rule]
  lines += [line(r) for r in rows] + [rule]
  t, f, n = summary.trainable, summary.frozen, summary.non_trainable
  lines.append(f"Parameters: {t.count + f.count:,} ({bytes_text(t.bytes + f.bytes)}): "
               f"{t.count:,} trainable, {f.count:,} frozen")
  lines.append(f"Non-trainable state (e.g. batch-norm statistics): {n.count:,} "
               f"({bytes_text(n.bytes)})")
  if summary.flops is not None:
    batch = summary.input_shapes[0].shape[0] if summary.input_shapes[0].shape else 1
    lines.append(f"Forward pass: {summary.flops:,} FLOPs for a batch of {batch}"
                 + (f"; backward pass: {summary.backward_flops:,}" if with_backward else ""))
  lines.append(f"Activations (the innermost layers' outputs, kept for the backward pass): "
               f"{bytes_text(summary.activation_bytes)}")
  return "\n".join(lines) + "\n"
