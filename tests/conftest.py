"""Shared fixtures: the real data root, tiny generated IDX datasets, and a base config."""

import gzip
import os
import pathlib
import tempfile

import numpy as np
import pytest

from configs import mnist_lenet

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
# No test reaches the internet: a dataset that is not found locally is "downloaded" from a
# closed local port (so it fails at once) into a scratch cache, here and in the CLI
# subprocesses, which inherit these. Download tests start their own mirror.
OFFLINE_MIRROR = "http://127.0.0.1:9"
os.environ["JAXLEARN_DATA_MIRROR"] = OFFLINE_MIRROR
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jaxlearn_test_cache_")


def real_data_dir() -> str:
  """$JAXLEARN_DATA_DIR, else the shared data folder beside the project checkout."""
  return os.environ.get("JAXLEARN_DATA_DIR") or str(PROJECT_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def mnist_root() -> str:
  root = real_data_dir()
  if not os.path.exists(os.path.join(root, "mnist", "train-images-idx3-ubyte.gz")):
    pytest.skip(f"real MNIST not found under {root}; set JAXLEARN_DATA_DIR")
  return root


def write_idx(path, array: np.ndarray, magic: int) -> None:
  """Writes `array` (uint8) as a gzip-compressed IDX file."""
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def make_fake_mnist(root, num_train=640, num_test=160, seed=0, name="mnist",
                    label_noise=0.2) -> str:
  """A learnable MNIST-shaped dataset: each class is a faint bar at its own row.

  A share `label_noise` of the labels is redrawn at random, so no model reaches
  100% and the validation metrics differ from epoch to epoch, as on real data.
  """
  rng = np.random.default_rng(seed)
  directory = pathlib.Path(root) / name
  directory.mkdir(parents=True, exist_ok=True)
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 100, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
      images[i, 2 + 2 * label:4 + 2 * label, 4:24] += 60
    noisy = rng.random(n) < label_noise
    labels[noisy] = rng.integers(0, 10, noisy.sum())
    write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
  return str(root)


@pytest.fixture
def fake_root(tmp_path) -> str:
  return make_fake_mnist(tmp_path / "data")


@pytest.fixture
def small_config(fake_root):
  """The LeNet-5 experiment shrunk to the fake dataset: seconds per run."""
  config = mnist_lenet.get_config()
  config.data.dir = fake_root
  config.batch_size = 64
  config.eval_batch_size = 80
  config.num_epochs = 2
  config.log_every_steps = 4
  config.progress_bar = False
  config.compilation_cache_dir = ""  # Tests leave the user's cache alone.
  config.logging.layer_stats = False  # A compile per run; tests/test_diagnose.py runs them.
  return config


def make_fake_cifar10(root, per_batch=64, num_test=64, seed=0) -> str:
  """CIFAR-10 binary batches where each class is a bright horizontal band of its own row."""
  rng = np.random.default_rng(seed)
  directory = pathlib.Path(root) / "cifar10"
  directory.mkdir(parents=True, exist_ok=True)
  names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
  for name in names:
    n = num_test if name == "test_batch.bin" else per_batch
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 3, 32, 32)).astype(np.uint8)
    for i, label in enumerate(labels):
      images[i, :, 3 * label:3 * label + 3, 4:28] = 255
    records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
    records.astype(np.uint8).tofile(directory / name)
  return str(root)


POSITIVE_WORDS = ("great", "wonderful", "moving", "funny", "brilliant", "charming")
NEGATIVE_WORDS = ("dull", "awful", "boring", "bleak", "tedious", "mess")
NEUTRAL_WORDS = ("the", "film", "a", "story", "actors", "plot", "this", "is", "of", "it")


def fake_sentences(n, seed=0):
  """Sentences of 3-30 words whose label is which sentiment words they contain."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  sentences = []
  for label in labels:
    words = list(rng.choice(NEUTRAL_WORDS, rng.integers(2, 25)))
    cue = rng.choice(POSITIVE_WORDS if label else NEGATIVE_WORDS, rng.integers(1, 4))
    for word in cue:
      words.insert(int(rng.integers(0, len(words) + 1)), str(word))
    sentences.append(" ".join(words))
  return sentences, labels


def make_fake_text(root, name, num_train=600, num_test=200) -> str:
  """ROOT/sst2/{train,dev}.tsv or ROOT/imdb/{train,test}.csv of generated sentences."""
  import csv
  directory = pathlib.Path(root) / name
  directory.mkdir(parents=True, exist_ok=True)
  files = ({"train.tsv": num_train, "dev.tsv": num_test} if name == "sst2" else
           {"train.csv": num_train, "test.csv": num_test})
  for seed, (file, n) in enumerate(files.items()):
    sentences, labels = fake_sentences(n, seed)
    with open(directory / file, "w", newline="", encoding="utf-8") as f:
      if name == "sst2":
        f.write("sentence\tlabel\n")
        f.writelines(f"{s} \t{y}\n" for s, y in zip(sentences, labels))
      else:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([s, "positive" if y else "negative"] for s, y in zip(sentences, labels))
  return str(root)


def make_titanic_csv(path, n=400, seed=0) -> str:
  """A Titanic-style table: survival depends on sex and class; some ages/ports missing."""
  import csv
  rng = np.random.default_rng(seed)
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp",
                     "Parch", "Ticket", "Fare", "Cabin", "Embarked"])
    for i in range(n):
      pclass, sex = int(rng.integers(1, 4)), str(rng.choice(["male", "female"]))
      chance = (0.75 if sex == "female" else 0.2) + (0.15 if pclass == 1 else 0.0)
      age = "" if rng.random() < 0.2 else f"{rng.uniform(1, 70):.1f}"
      writer.writerow([i + 1, int(rng.random() < chance), pclass, f"Person, Mr. {i}", sex, age,
                       int(rng.integers(0, 3)), int(rng.integers(0, 3)), f"T{i}",
                       f"{rng.uniform(5, 100) * (4 - pclass):.2f}", "",
                       rng.choice(["S", "C", "Q", ""])])
  return str(path)


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory):
  """Workdirs of finished runs, trained once per session: {"lenet", "text", "table", "linreg"}."""
  from tests import runs  # pylint: disable=import-outside-toplevel
  root = str(tmp_path_factory.mktemp("finished_runs"))
  return {"lenet": runs.lenet_run(root), "text": runs.text_run(root),
          "table": runs.table_run(root), "linreg": runs.regression_run(root)}
