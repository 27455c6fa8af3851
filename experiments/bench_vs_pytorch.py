"""Training throughput of jaxlearn vs a plain PyTorch eager loop, side by side.

  pip install -e ".[bench]"        # or, CPU only: pip install torch==2.13.0
  python experiments/bench_vs_pytorch.py --models lenet5,mlp --json /tmp/bench.json
  # On a GPU (both sides run there): also --precision bf16, --steps-per-call 468

Both sides train the same model (same layers, initialisation scheme aside), with
the same optimizer (Adam, lr 1e-3), batch size, precision (fp32, or bf16: jaxlearn's
config.precision against torch.autocast) and data, held in the device's memory
(PyTorch runs on CUDA when JAX runs on a GPU and PyTorch sees one): MNIST from
$JAXLEARN_DATA_DIR for lenet5/mlp (random images if absent), generated learnable
data for resnet20 (CIFAR-shaped 32x32x3 images) and gru (configs/imdb_gru.py's
bidirectional GRU on IMDB-shaped token sequences of 32-256 real tokens padded to
256; PyTorch packs them with pack_padded_sequence, so both sides stop each sequence
at its true length).
jaxlearn runs its real loop (`epoch.EpochRunner` over `compiled.compile_steps`'
`train_step`, the epoch shuffled by `pipeline.make_epoch_batcher`); PyTorch runs
the loop the seeds write: shuffle, slice, zero_grad, forward, backward, step.
Each repetition times one epoch of each, alternating; compilation is timed
separately (a first, untimed jaxlearn epoch). The run fails if the two sides'
training losses are not comparable, so speed is never bought with a wrong
computation.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxlearn.runs import build  # pylint: disable=wrong-import-position
from jaxlearn.training import compiled  # pylint: disable=wrong-import-position
from jaxlearn.core import parallel, tasks  # pylint: disable=wrong-import-position
from jaxlearn.training import epoch as epoch_lib  # pylint: disable=wrong-import-position
from jaxlearn.config import default_config  # pylint: disable=wrong-import-position
from jaxlearn.data import datasets, images as image_data, pipeline, sources  # pylint: disable=wrong-import-position

GRU_LENGTH, GRU_VOCAB = 256, 20002


# ---------------------------------------------------------------- data

def mnist_images(max_examples: int):
  """MNIST's training images (N, 28, 28, 1) normalised, and labels; random if not found."""
  root = os.environ.get(sources.DATA_DIR_ENV, "")
  config = default_config().data
  config.dir = root
  config.source = "local"
  try:
    raw = datasets.load_raw(config).train
    images = image_data.normalise_images(raw[0], (0.1307,), (0.3081,))
    labels = raw[1].astype(np.int32)
    source = "MNIST train split"
  except Exception:  # pylint: disable=broad-except
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 60000).astype(np.int32)
    images = rng.normal(size=(60000, 28, 28, 1)).astype(np.float32)
    images[np.arange(60000), labels * 2 + 3, 4:24, 0] += 3.0  # A learnable bar per class.
    source = f"generated (no MNIST under ${sources.DATA_DIR_ENV})"
  return images[:max_examples], labels[:max_examples], source


def cifar_like_images(max_examples: int):
  """Random 32x32x3 images with a learnable colour band per class (CIFAR-10's shape)."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, max_examples).astype(np.int32)
  images = rng.normal(size=(max_examples, 32, 32, 3)).astype(np.float32)
  images[np.arange(max_examples), labels * 3 + 1, 4:28, labels % 3] += 3.0
  return images, labels, "generated CIFAR-shaped images"


def token_sequences(max_examples: int):
  """Sequences of 32-256 random token ids padded with 0 to 256; the label is whether a
  'positive' id (2-101) outnumbers a 'negative' one (102-201)."""
  rng = np.random.default_rng(0)
  ids = np.zeros((max_examples, GRU_LENGTH), np.int32)
  labels = np.zeros(max_examples, np.int32)
  for row in range(max_examples):
    length = int(rng.integers(32, GRU_LENGTH + 1))
    ids[row, :length] = rng.integers(2, GRU_VOCAB, length)
    positive, negative = np.sum(ids[row] < 102) - np.sum(ids[row] == 0), np.sum(
        (ids[row] >= 102) & (ids[row] < 202))
    labels[row] = int(positive > negative)
  return ids, labels, "generated token sequences (IMDB-shaped)"


# Benchmark name -> (jaxlearn model config, data, default examples per epoch).
BENCHMARKED = {
    "lenet5": ({"name": "lenet5"}, mnist_images, 60000),
    "mlp": ({"name": "mlp", "hidden": (128,)}, mnist_images, 60000),
    "resnet20": ({"name": "resnet20"}, cifar_like_images, 2560),
    "gru": ({"name": "gru", "embed_dim": 128, "hidden": 128, "bidirectional": True},
            token_sequences, 2560),
}
# The sizes jaxlearn takes from the data, per benchmark.
DIMS = {"lenet5": {}, "mlp": {}, "resnet20": {"in_channels": 3},
        "gru": {"vocab_size": GRU_VOCAB, "num_classes": 2}}


# ---------------------------------------------------------------- models per side

def torch_model(name: str):
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  if name == "lenet5":
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
  if name == "mlp":
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
  if name == "resnet20":
    return TorchResNet20()
  if name == "gru":
    return TorchGRU()
  raise ValueError(name)


def _torch_modules():
  """PyTorch ResNet-20 and GRU classifiers, as a seed would write them."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  class Block(nn.Module):

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.shortcut = nn.Sequential()
      if stride != 1 or cin != cout:
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

  class ResNet20(nn.Module):

    def __init__(self):
      super().__init__()
      self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                nn.ReLU())
      layers, cin = [], 16
      for stage, width in enumerate((16, 32, 64)):
        for i in range(3):
          layers.append(Block(cin, width, 2 if stage and not i else 1))
          cin = width
      self.blocks = nn.Sequential(*layers)
      self.head = nn.Linear(64, 10)

    def forward(self, x):
      return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))

  class GRU(nn.Module):

    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(GRU_VOCAB, 128, padding_idx=0)
      self.gru = nn.GRU(128, 128, batch_first=True, bidirectional=True)
      self.head = nn.Linear(256, 2)
      self._init_like_flax()

    def _init_like_flax(self):
      """Flax's defaults (embedding std 1/sqrt(dim), LeCun-normal input kernels, orthogonal
      recurrent kernels, zero biases): PyTorch's N(0, 1) embeddings learn this task far more
      slowly, and the loss check compares like with like."""
      with torch.no_grad():
        nn.init.normal_(self.embed.weight, std=128**-0.5)
        for name, weight in self.gru.named_parameters():
          if name.startswith("weight_ih"):
            nn.init.normal_(weight, std=128**-0.5)
          elif name.startswith("weight_hh"):
            for gate in weight.chunk(3, dim=0):
              nn.init.orthogonal_(gate)
          else:
            nn.init.zeros_(weight)
        nn.init.normal_(self.head.weight, std=256**-0.5)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids):
      lengths = (ids != 0).sum(1).clamp(min=1)
      packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths.cpu(),
                                                 batch_first=True, enforce_sorted=False)
      _, h = self.gru(packed)
      return self.head(torch.cat([h[0], h[1]], dim=1))

  return ResNet20, GRU


def TorchResNet20():  # pylint: disable=invalid-name
  return _torch_modules()[0]()


def TorchGRU():  # pylint: disable=invalid-name
  return _torch_modules()[1]()


def jaxlearn_config(name: str, batch_size: int, precision: str = "fp32",
                    steps_per_call: int = 0):
  """The benchmark's jaxlearn config; `steps_per_call` 0 keeps the library's default."""
  config = default_config()
  config.model.update(BENCHMARKED[name][0])
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.schedule.name = "constant"
  config.batch_size = batch_size
  config.num_epochs = 1000
  config.log_every_steps = 100
  config.progress_bar = False
  config.precision = precision
  if steps_per_call:  # Chunks of that many steps, read back once per chunk.
    config.steps_per_call = config.log_every_steps = steps_per_call
  return config


# ---------------------------------------------------------------- the two loops

class JaxlearnSide:
  """jaxlearn's own state, compiled step, epoch batcher and epoch loop."""

  def __init__(self, name, images, labels, batch_size, precision="fp32", steps_per_call=0):
    self.config = jaxlearn_config(name, batch_size, precision, steps_per_call)
    self.mesh = parallel.make_mesh()
    self.steps = len(labels) // batch_size
    self.state = jax.device_put(build.create_state(self.config, self.steps, DIMS[name]),
                                parallel.replicated(self.mesh))
    train_chunk, _ = compiled.compile_steps(self.mesh, tasks.make_task(self.config),
                                            steps_per_call=self.config.steps_per_call,
                                            cpu_kernels=self.config.cpu_kernels)
    self.runner = epoch_lib.EpochRunner.from_config(self.config, train_chunk, self.steps)
    self.batcher = pipeline.make_epoch_batcher(batch_size, self.mesh)
    self.data = pipeline.to_device({"inputs": images, "targets": labels}, self.mesh)
    self.epoch = 0

  def run_epoch(self) -> tuple[float, float]:
    """Trains one epoch; returns (seconds, mean training loss)."""
    started = time.perf_counter()
    batches = self.batcher(self.data, 0, self.epoch)
    self.state, metrics = self.runner.train(self.state, batches, self.epoch)
    jax.block_until_ready(self.state)
    self.epoch += 1
    return time.perf_counter() - started, metrics["loss"]


class TorchSide:
  """A plain PyTorch eager loop over tensors in memory."""

  def __init__(self, name, images, labels, batch_size, precision="fp32", device="cpu"):
    import torch  # pylint: disable=import-outside-toplevel
    self.torch = torch
    self.device = torch.device(device)
    torch.manual_seed(0)
    self.model = torch_model(name).to(self.device)
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
    if images.ndim == 4:  # NHWC -> PyTorch's NCHW.
      images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    self.inputs = torch.from_numpy(images if images.dtype != np.int32 else
                                   images.astype(np.int64)).to(self.device)
    self.targets = torch.from_numpy(labels.astype(np.int64)).to(self.device)
    self.bf16 = precision == "bf16"
    self.batch_size = batch_size
    self.steps = len(labels) // batch_size

  def run_epoch(self) -> tuple[float, float]:
    torch, bs = self.torch, self.batch_size
    started = time.perf_counter()
    self.model.train()
    order = torch.randperm(len(self.targets), device=self.device)
    total = torch.zeros((), device=self.device)
    for i in range(self.steps):
      idx = order[i * bs:(i + 1) * bs]
      x, y = self.inputs[idx], self.targets[idx]
      self.optimizer.zero_grad()
      with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
      loss.backward()
      self.optimizer.step()
      total += loss.detach()
    mean_loss = float(total) / self.steps  # Waits for the device.
    return time.perf_counter() - started, mean_loss


# ---------------------------------------------------------------- measuring

def torch_device(requested: str) -> str:
  """"auto": CUDA when JAX runs on a GPU and PyTorch sees one, so both sides share a device."""
  import torch  # pylint: disable=import-outside-toplevel
  if requested != "auto":
    return requested
  return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def machine(device: str = "cpu") -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  jax_device = jax.devices()[0]
  return {
      "date": datetime.date.today().isoformat(),
      "cpu": platform.processor() or platform.machine(),
      "cpu_cores": os.cpu_count(),
      "jax_device": f"{jax_device.platform}:{getattr(jax_device, 'device_kind', '')}",
      "torch_device": torch.cuda.get_device_name() if device == "cuda" else device,
      "jax": jax.__version__,
      "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(),
  }


def benchmark(name: str, reps: int, batch_size: int, max_examples: int,
              precision: str = "fp32", device: str = "cpu", steps_per_call: int = 0) -> dict:
  _, make_data, default_examples = BENCHMARKED[name]
  images, labels, source = make_data(min(max_examples or default_examples, default_examples)
                                     if name in ("resnet20", "gru") else
                                     max_examples or default_examples)
  print(f"\n{name}: {len(labels)} examples ({source}), batch {batch_size}, {precision}, "
        f"{reps} alternating repetitions of one epoch each; jaxlearn on "
        f"{jax.default_backend()}, PyTorch on {device}", flush=True)
  started = time.perf_counter()
  ours = JaxlearnSide(name, images, labels, batch_size, precision, steps_per_call)
  first_seconds, _ = ours.run_epoch()  # Compiles the batcher and the step.
  theirs = TorchSide(name, images, labels, batch_size, precision, device)
  theirs.run_epoch()  # PyTorch's own warm-up (allocator, kernels), untimed.
  setup_seconds = time.perf_counter() - started
  examples = ours.steps * batch_size
  rates = {"jaxlearn": [], "pytorch": []}
  losses = {"jaxlearn": [], "pytorch": []}
  for rep in range(reps):
    for side, runner in (("jaxlearn", ours), ("pytorch", theirs)):
      seconds, loss = runner.run_epoch()
      rates[side].append(examples / seconds)
      losses[side].append(loss)
    print(f"  rep {rep + 1}: jaxlearn {rates['jaxlearn'][-1]:9.0f} img/s (loss "
          f"{losses['jaxlearn'][-1]:.4f})   pytorch {rates['pytorch'][-1]:9.0f} img/s (loss "
          f"{losses['pytorch'][-1]:.4f})", flush=True)
  check_comparable_losses(name, losses)
  steady_epoch = examples / statistics.median(rates["jaxlearn"])
  result = {
      "jaxlearn_img_s": statistics.median(rates["jaxlearn"]),
      "pytorch_img_s": statistics.median(rates["pytorch"]),
      "ratio": statistics.median(rates["jaxlearn"]) / statistics.median(rates["pytorch"]),
      "jaxlearn_img_s_min_max": [min(rates["jaxlearn"]), max(rates["jaxlearn"])],
      "pytorch_img_s_min_max": [min(rates["pytorch"]), max(rates["pytorch"])],
      "jaxlearn_compile_s": max(0.0, first_seconds - steady_epoch),
      "jaxlearn_epoch_s": steady_epoch,
      "final_train_loss": {side: values[-1] for side, values in losses.items()},
      "batch_size": batch_size, "examples_per_epoch": examples, "data": source,
      "precision": precision, "steps_per_call": ours.config.steps_per_call,
      "setup_s": setup_seconds, "machine": machine(device),
  }
  print(f"  median: jaxlearn {result['jaxlearn_img_s']:.0f} img/s, pytorch "
        f"{result['pytorch_img_s']:.0f} img/s, ratio {result['ratio']:.2f}x; jaxlearn compile "
        f"{result['jaxlearn_compile_s']:.1f}s", flush=True)
  return result


def check_comparable_losses(name: str, losses: dict) -> None:
  """Both sides must learn the same thing: their training losses agree within a margin."""
  for rep, (ours, theirs) in enumerate(zip(losses["jaxlearn"], losses["pytorch"])):
    if not (np.isfinite(ours) and np.isfinite(theirs)) or abs(ours - theirs) > (
        0.5 * max(ours, theirs) + 0.02):
      raise SystemExit(f"{name}: training losses differ too much at repetition {rep + 1} "
                       f"(jaxlearn {ours:.4f}, pytorch {theirs:.4f}); the two sides are not "
                       "computing the same thing, so their speeds cannot be compared.")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="lenet5,mlp,resnet20,gru",
                      help="comma-separated: lenet5, mlp, resnet20, gru")
  parser.add_argument("--reps", type=int, default=5, help="alternating repetitions (>= 5)")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--max-examples", type=int, default=0,
                      help="examples per epoch; 0: 60000 (lenet5, mlp), 2560 (resnet20), "
                           "2560 (gru); resnet20/gru never use more than their default")
  parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
  parser.add_argument("--torch-device", default="auto",
                      help="cpu, cuda, or auto (cuda when JAX runs on a GPU)")
  parser.add_argument("--steps-per-call", type=int, default=0,
                      help="jaxlearn steps per dispatch and per read-back (0: the library's "
                           "default, 16, read back every 100 steps)")
  parser.add_argument("--json", help="write the results here")
  args = parser.parse_args()
  names = args.models.split(",")
  unknown = [name for name in names if name not in BENCHMARKED]
  if unknown:
    parser.error(f"--models: {unknown} are not benchmarked; choose from {list(BENCHMARKED)}.")
  results = {}
  for name in names:  # Written after each model, so a later failure keeps the earlier ones.
    results[name] = benchmark(name, args.reps, args.batch_size, args.max_examples,
                              args.precision, torch_device(args.torch_device),
                              args.steps_per_call)
    if args.json:
      with open(args.json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
  if args.json:
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
  main()
