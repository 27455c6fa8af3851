"""Every experiment in configs/ trains through `python -m jaxlearn.main` on small data.

Real MNIST, Fashion-MNIST and SST-2 are used where the data root has them
(shortened with max_train_examples); CIFAR-10, IMDB and the table are tiny
generated stand-ins in the real file formats. Each run's training loss must fall.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import (PROJECT_ROOT, make_fake_cifar10, make_fake_text, make_titanic_csv,
                            real_data_dir)

ALL_CONFIGS = sorted(p.stem for p in (PROJECT_ROOT / "configs").glob("*.py")
                     if p.stem != "__init__")

# Per config: (needs the real data root, overrides that keep the run to seconds).
SHORT = ["--config.num_epochs=3"]
REAL_IMAGES = ["--config.data.max_train_examples=1536", "--config.eval_batch_size=1000"]
RUNS = {
    "linreg": (False, SHORT),
    "binary_mlp": (False, SHORT),
    "mnist_mlp": (True, SHORT + REAL_IMAGES),
    "mnist_bn_mlp": (True, SHORT + REAL_IMAGES),
    "mnist_cnn": (True, SHORT + REAL_IMAGES),
    "mnist_lenet": (True, SHORT + REAL_IMAGES),
    "fashion_mnist_cnn": (True, SHORT + REAL_IMAGES),
    "mnist_transformer": (True, SHORT + REAL_IMAGES + ["--config.model.depth=2"]),
    "cifar10_resnet20": (False, SHORT + ["--config.batch_size=32", "--config.eval_batch_size=64"]),
    "cifar10_resnet18": (False, SHORT + ["--config.batch_size=16", "--config.eval_batch_size=64",
                                         "--config.data.max_train_examples=64",
                                         "--config.optimizer.learning_rate=0.01"]),
    "sst2_gru": (True, SHORT + ["--config.data.max_train_examples=3072"]),
    "sst2_lstm": (True, SHORT + ["--config.data.max_train_examples=3072"]),
    "imdb_gru": (False, SHORT + ["--config.data.max_length=32", "--config.batch_size=32",
                                 "--config.eval_batch_size=100"]),
    "tabular_mlp": (False, SHORT),
}


def test_every_config_has_a_run_here():
  assert sorted(RUNS) == ALL_CONFIGS


def _generated_root(tmp_path: pathlib.Path, name: str) -> str:
  root = tmp_path / "data"
  if name.startswith("cifar10"):
    make_fake_cifar10(root)
  elif name == "imdb_gru":
    make_fake_text(root, "imdb")
  elif name == "tabular_mlp":
    root.mkdir()
    make_titanic_csv(root / "titanic.csv")
  return str(root)


# The slowest runs (15-45 s each on 2 cores) go with the slow suite, which CI runs too.
SLOW = ("cifar10_resnet18", "cifar10_resnet20", "mnist_transformer", "sst2_gru", "sst2_lstm")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(RUNS)])
def test_config_trains_and_its_loss_falls(name, tmp_path):
  needs_real, overrides = RUNS[name]
  root = real_data_dir() if needs_real else _generated_root(tmp_path, name)
  if needs_real and not os.path.isdir(root):
    pytest.skip(f"no real data under {root}; set JAXLEARN_DATA_DIR")
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAXLEARN_DATA_DIR=root)
  result = subprocess.run(
      [sys.executable, "-m", "jaxlearn.main", f"--config=configs/{name}.py",
       f"--workdir={workdir}", "--config.progress_bar=False", *overrides],
      cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  losses = [h["train_loss"] for h in summary["history"]]
  assert losses[-1] < losses[0], losses
  assert summary["epochs_run"] == 3
