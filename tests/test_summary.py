"""The model summary: shapes against flax's own tabulate and the conv formula, FLOPs by hand."""

import re
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import pytest

import jaxlearn
from jaxlearn.core import state as state_lib
from jaxlearn.models import MODELS, LeNet5, MLP, ResNet20
from jaxlearn.models.summary import shape_text, summarize
from jaxlearn.runs import build
from tests.conftest import PROJECT_ROOT

IMAGE = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
ZOO = {  # name -> (arguments, one input)
    "linear_regression": ({"in_features": 3}, jax.ShapeDtypeStruct((2, 3), jnp.float32)),
    "simple_classifier": ({}, jax.ShapeDtypeStruct((2, 2), jnp.float32)),
    "mlp": ({"hidden": (32, 16), "batch_norm": True, "dropout": 0.1}, IMAGE),
    "simple_cnn": ({"hidden": 16, "dropout": 0.1}, IMAGE),
    "lenet5": ({}, IMAGE),
    "resnet": ({"blocks": (1, 1), "widths": (8, 16)}, jax.ShapeDtypeStruct((2, 16, 16, 3),
                                                                             jnp.float32)),
    "resnet18": ({}, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)),
    "resnet20": ({}, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)),
    "resnet56": ({}, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)),
    "digit_transformer": ({"depth": 2}, IMAGE),
    "rnn": ({"vocab_size": 50, "cell": "lstm", "bidirectional": True},
            jax.ShapeDtypeStruct((2, 12), jnp.int32)),
    "gru": ({"vocab_size": 50}, jax.ShapeDtypeStruct((2, 12), jnp.int32)),
    "lstm": ({"vocab_size": 50}, jax.ShapeDtypeStruct((2, 12), jnp.int32)),
    "simple_rnn": ({"vocab_size": 50}, jax.ShapeDtypeStruct((2, 12), jnp.int32)),
    "embedding_bag": ({"vocab_size": 50}, jax.ShapeDtypeStruct((2, 12), jnp.int32)),
}


def _tabulate_outputs(model, x) -> dict[str, list[str]]:
  """Each path's outputs as flax's own `nnx.tabulate` prints them (its first call)."""
  text = nnx.tabulate(model, jnp.zeros(x.shape, x.dtype), train=False,
                      console_kwargs={"force_terminal": False, "width": 1000})
  rows, cells = {}, None
  for line in text.splitlines() + ["├"]:
    if line.startswith(("├", "└")) and cells is not None:
      path = " ".join(cells[0]).strip()
      rows.setdefault(path, re.findall(r"\w+\[[\d,]*\]", " ".join(cells[3])))
      cells = None
    elif line.startswith("│"):
      parts = line.strip("│").split("│")
      cells = cells or [[] for _ in parts]
      for cell, part in zip(cells, parts):
        cell.append(part.strip())
  return rows


def test_the_zoo_is_covered():
  assert set(ZOO) == set(MODELS)


# The largest models' checks run with the slow suite; the default one covers each family.
SLOW = {"resnet18", "resnet"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(ZOO)])
def test_every_layers_output_shape_is_what_flax_tabulate_sees(name):
  kwargs, x = ZOO[name]
  model = MODELS[name](**kwargs, rngs=nnx.Rngs(0))
  table = summarize(model, x, flops=False, train=False)
  reference = _tabulate_outputs(model, x)
  ours = {layer.path: [shape_text(s) for s in layer.output_shapes] for layer in table.layers}
  modules = {"/".join(map(str, p)) for p, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)}
  # tabulate also lists other methods (path/method); the summary has a row per module.
  assert ours == {path: shapes for path, shapes in reference.items() if path in modules}
  assert len(ours) >= 2 and ours[""] == [shape_text(model(jnp.zeros(x.shape, x.dtype)))]
  params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert table.trainable.count == params and table.layers[0].params == params


def _conv_out(size: int, kernel: int, padding: int, stride: int = 1) -> int:
  """The notes' formula: (size - kernel + 2 * padding) / stride + 1."""
  return (size - kernel + 2 * padding) // stride + 1


def test_lenet_shapes_follow_the_formula_and_its_flops_the_hand_count():
  table = summarize(LeNet5(rngs=nnx.Rngs(0)), jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32),
                    train=False)
  rows = {layer.path: layer for layer in table.layers}
  s1 = _conv_out(28, 5, 2)  # 28, then average pooling halves it
  s2 = _conv_out(s1 // 2, 5, 0)  # 10
  s3 = _conv_out(s2 // 2, 5, 0)  # 1
  assert [rows[p].output_shapes[0].shape for p in ("conv1", "conv2", "conv3", "fc1", "fc2")] == [
      (1, s1, s1, 6), (1, s2, s2, 16), (1, s3, s3, 120), (1, 84), (1, 10)]
  # FLOPs: 2 per multiply-add with the input, 1 per bias add. conv1's 5x5 window on a 28x28
  # image padded by 2 reaches 28 * 5 - 2 * (2 + 1) = 134 real pixels per axis, per channel.
  conv1 = 2 * 6 * 134 ** 2 + 28 * 28 * 6
  conv2 = 2 * (10 * 10 * 16) * (5 * 5 * 6) + 10 * 10 * 16
  conv3 = 2 * 120 * (5 * 5 * 16) + 120
  fc1, fc2 = 2 * 120 * 84 + 84, 2 * 84 * 10 + 10
  assert [rows[p].flops for p in ("conv1", "conv2", "conv3", "fc1", "fc2")] == [
      conv1, conv2, conv3, fc1, fc2]
  relus = 28 * 28 * 6 + 10 * 10 * 16 + 120 + 84
  pools = 4 * (14 * 14 * 6 + 5 * 5 * 16)  # 3 adds and a divide per 2x2 average
  assert table.flops == conv1 + conv2 + conv3 + fc1 + fc2 + relus + pools
  assert table.trainable.count == 61_706 and table.non_trainable.count == 0


def test_mlp_flops_and_the_backward_pass_by_hand():
  table = summarize(MLP(hidden=(128,), rngs=nnx.Rngs(0)),
                    jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.float32), backward=True, train=False)
  rows = {layer.path: layer for layer in table.layers}
  hidden, head = 4 * (2 * 784 * 128 + 128), 4 * (2 * 128 * 10 + 10)
  assert (rows["hidden/0"].flops, rows["head"].flops) == (hidden, head)
  assert table.flops == hidden + head + 4 * 128  # and the ReLU
  # The first layer's backward pass: the kernel's gradient (x^T g) and the bias' (sum of g);
  # the head's also the input's gradient (g W^T), which the data needs not.
  assert rows["hidden/0"].backward_flops == 2 * 4 * 784 * 128 + 3 * 128
  assert rows["head"].backward_flops == 2 * (2 * 4 * 128 * 10) + 3 * 10


def test_a_recurrent_layer_counts_every_step():
  """XLA counts a loop's body once; fully unrolled, the same RNN is counted in full."""
  def rnn(unroll):
    return nnx.RNN(nnx.GRUCell(8, 16, rngs=nnx.Rngs(0)), unroll=unroll)
  x = jax.ShapeDtypeStruct((2, 10, 8), jnp.float32)
  graphdef, params = nnx.split(rnn(10))
  unrolled = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x)).lower(params, x).cost_analysis()
  unrolled = unrolled[0] if isinstance(unrolled, list) else unrolled
  for unroll in (1, 2, 10):  # Up to the loop's own bookkeeping (a few FLOPs).
    assert summarize(rnn(unroll), x).flops == pytest.approx(unrolled["flops"], rel=1e-3), unroll


def test_frozen_parameters_and_batch_norm_statistics_are_counted_apart():
  model = ResNet20(rngs=nnx.Rngs(0))
  table = summarize(model, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32), freeze=["stem.*"],
                    flops=False, train=False)
  assert table.frozen.count == 3 * 3 * 3 * 16 + 2 * 16  # the stem conv and its batch norm
  assert table.trainable.count + table.frozen.count == 272_474
  batch_norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
  assert table.non_trainable.count == sum(2 * m.mean.shape[0] for m in batch_norms)
  assert table.non_trainable.bytes == 4 * table.non_trainable.count
  assert "Parameters: 272,474 (1.1 MB): 272,010 trainable, 464 frozen" in str(table)
  assert len(table.table(max_depth=0).splitlines()) < len(str(table).splitlines())


def test_jaxlearn_summary_is_the_function_and_a_training_state_is_summarised_as_it():
  model = LeNet5(rngs=nnx.Rngs(0))
  assert str(jaxlearn.summary(model, IMAGE, train=False)) == str(summarize(model, IMAGE))
  config = __import__("configs.mnist_lenet", fromlist=["get_config"]).get_config()
  state = build.create_state(config, 10, {"in_channels": 1, "num_classes": 10})
  table = build.summarize_state(state, jnp.zeros((1, 28, 28, 1)), config)
  assert table.trainable.count == state_lib.num_params(state) == 61_706
  assert [l.output_shapes for l in table.layers] == [
      l.output_shapes for l in summarize(LeNet5(rngs=nnx.Rngs(1)), jnp.zeros((1, 28, 28, 1)),
                                         flops=False).layers]


def test_a_run_writes_its_model_summary(finished_runs):
  text = open(f"{finished_runs['lenet']}/model_summary.txt", encoding="utf-8").read()
  assert text.startswith("LeNet5 on float32[1,28,28,1]\n")
  assert re.search(r"^conv1 +Conv +float32\[1,28,28,6\] +156 +220,176 ", text, re.M)
  assert "Parameters: 61,706 (246.8 kB): 61,706 trainable, 0 frozen" in text


def _summary_command(*flags):
  return subprocess.run([sys.executable, "-m", "jaxlearn.summary", *flags], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=300)


def test_the_command_prints_the_configs_model_on_its_data(mnist_root):
  result = _summary_command("--config=configs/mnist_lenet.py", f"--config.data.dir={mnist_root}",
                            "--backward", "--batch_size=8")
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("LeNet5 on float32[8,28,28,1]\n")
  # conv2, batch 8: forward 2 * 12,800 outputs * 150 taps + 12,800 bias adds; backward the
  # kernel's and the input's gradients (as many multiply-adds each) and the bias' (a sum of
  # 12,800 values into 16: 12,784 adds).
  outputs = 8 * 10 * 10 * 16
  forward, backward = 2 * outputs * 150 + outputs, 2 * (2 * outputs * 150) + outputs - 16
  assert re.search(rf"^conv2 +Conv +float32\[8,10,10,16\] +2,416 +{forward:,} +{backward:,} ",
                   result.stdout, re.M), result.stdout
  result = _summary_command("--config=configs/mnist_lenet.py", "--config.model.widht=3")
  assert result.returncode == 2 and "jaxlearn: error: Unknown config key" in result.stderr
