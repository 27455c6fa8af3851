"""Small finished training runs of each task and input kind, for the after-training tests."""

import os

from configs import linreg, mnist_lenet, sst2_gru, tabular_mlp
from jaxlearn.training import train
from tests.conftest import make_fake_mnist, make_fake_text, make_titanic_csv


def _quiet(config):
  config.progress_bar = False
  config.compilation_cache_dir = ""
  config.logging.layer_stats = False  # A compile per run; tests/test_diagnose.py runs them.
  return config


def lenet_config(root):
  """The config of `lenet_run` (its data generated under `root` if not there yet)."""
  config = _quiet(mnist_lenet.get_config())
  data = os.path.join(root, "data")
  config.data.dir = data if os.path.isdir(os.path.join(data, "mnist")) else make_fake_mnist(data)
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 80, 2
  return config


def lenet_run(root) -> str:
  """LeNet-5 on the fake MNIST (20% label noise, so it makes mistakes to analyse)."""
  train.train_and_evaluate(lenet_config(root), os.path.join(root, "lenet"))
  return os.path.join(root, "lenet")


def text_run(root) -> str:
  """A small GRU on generated SST-2-style sentences."""
  config = _quiet(sst2_gru.get_config())
  config.data.dir = make_fake_text(os.path.join(root, "text_data"), "sst2")
  config.data.max_length = 32
  config.model.embed_dim, config.model.hidden = 16, 16
  config.batch_size, config.eval_batch_size, config.num_epochs = 32, 50, 2
  train.train_and_evaluate(config, os.path.join(root, "gru"))
  return os.path.join(root, "gru")


def table_run(root) -> str:
  """The Titanic-style MLP (binary task; numbers, categories, missing cells)."""
  config = _quiet(tabular_mlp.get_config())
  config.data.path = make_titanic_csv(os.path.join(root, "titanic.csv"))
  config.num_epochs = 5
  train.train_and_evaluate(config, os.path.join(root, "titanic"))
  return os.path.join(root, "titanic")


def regression_run(root) -> str:
  config = _quiet(linreg.get_config())
  config.num_epochs = 2
  train.train_and_evaluate(config, os.path.join(root, "linreg"))
  return os.path.join(root, "linreg")


def call_artifact_in_fresh_process(directory, inputs, scratch) -> "np.ndarray":
  """DIR/model.jax called on `inputs` by a process that imports only jax and numpy.

  It fails if jaxlearn or flax got imported there: the artifact must not need them.
  """
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  np.save(os.path.join(scratch, "x.npy"), inputs)
  code = ("import jax, numpy as np, sys; p = jax.export.deserialize(bytearray(open("
          f"{os.path.join(directory, 'model.jax')!r}, 'rb').read())); "
          f"np.save({os.path.join(scratch, 'y.npy')!r}, "
          f"np.asarray(p.call(np.load({os.path.join(scratch, 'x.npy')!r})))); "
          "assert not any(m == 'jaxlearn' or m.startswith(('jaxlearn.', 'flax')) "
          "for m in sys.modules)")
  subprocess.run([sys.executable, "-c", code], cwd=scratch, timeout=300, check=True)
  return np.load(os.path.join(scratch, "y.npy"))
