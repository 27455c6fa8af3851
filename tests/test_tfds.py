"""The TFDS loaders against the real tensorflow-datasets, on its own mock data (no download).

`tfds.testing.mock_data` replaces only the files: `tfds.load` itself, its
split names, feature keys and class names are the library's own, so a loader
that passes the wrong arguments fails here. Run in CI's TFDS environment
(`pytest -m tfds`; see .ci/run), where tensorflow-datasets must import.
"""

import numpy as np
import pytest

from jaxlearn import data
from jaxlearn.config import default_config
from jaxlearn.data import sources

pytestmark = pytest.mark.tfds



@pytest.fixture
def mock_tfds(monkeypatch):
  import tensorflow_datasets  # pylint: disable=import-outside-toplevel  # Must be installed here.
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  monkeypatch.setattr(sources, "TFDS_READ_BATCH", 7)  # Several batches per split.
  with tensorflow_datasets.testing.mock_data(num_examples=20):
    yield


def _config(name, **data):
  config = default_config()
  config.data.name = name
  config.data.source = "tfds"
  config.data.update(data)
  return config.data


@pytest.mark.parametrize("name,shape,classes", [
    ("mnist", (28, 28, 1), 10), ("fashion_mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10)])
def test_image_datasets_load_through_tfds(mock_tfds, name, shape, classes):
  raw = data.load_raw(_config(name))
  assert raw.kind == "image"
  for inputs, labels in (raw.train, raw.test):
    assert inputs.shape == (20, *shape) and inputs.dtype == np.uint8
    assert labels.dtype == np.int32 and 0 <= labels.min() and labels.max() < classes
  assert len(raw.class_names) == classes
  if name == "fashion_mnist":
    assert raw.class_names[0] == "T-shirt/top"


@pytest.mark.parametrize("name,class_names", [("sst2", ("negative", "positive")),
                                              ("imdb", ("neg", "pos"))])
def test_text_datasets_load_through_tfds(mock_tfds, name, class_names):
  raw = data.load_raw(_config(name))
  assert raw.kind == "text" and raw.class_names == class_names
  for texts, labels in (raw.train, raw.test):
    assert len(texts) == 20 and all(isinstance(t, str) for t in texts)
    assert set(labels) <= {0, 1} and labels.dtype == np.int32


def test_a_tfds_dataset_trains_end_to_end(mock_tfds, tmp_path):
  from configs import mnist_mlp  # pylint: disable=import-outside-toplevel
  from jaxlearn.training import train  # pylint: disable=import-outside-toplevel
  config = mnist_mlp.get_config()
  config.data.source = "tfds"
  config.data.val_fraction = 0.25
  config.batch_size = 5
  config.eval_batch_size = 5
  config.num_epochs = 1
  config.progress_bar = False
  config.compilation_cache_dir = ""
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["epochs_run"] == 1 and 0.0 <= summary["test_accuracy"] <= 1.0


def test_the_grain_pipeline_reads_tfds_images_through_a_data_source(mock_tfds):
  """Only the labels are read at once; each image is read (and decoded by PIL, not by TFDS's
  TensorFlow) when indexed, and equals what TFDS's own data source decodes."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  raw = data.load_raw(_config("mnist", pipeline="grain"))
  images, labels = raw.train
  assert isinstance(images, sources.TfdsImages) and images.shape == (20, 28, 28, 1)
  assert len(raw.class_names) == 10 and raw.test[0].shape == (20, 28, 28, 1)
  reference = tfds.data_source("mnist", split="train")
  for i in (0, 7, 19):
    np.testing.assert_array_equal(images[i], reference[i]["image"])
    assert labels[i] == reference[i]["label"]
  picked = np.asarray(images[np.array([19, 2])])
  np.testing.assert_array_equal(picked[0], reference[19]["image"])
  test_reference = tfds.data_source("mnist", split="test")
  np.testing.assert_array_equal(raw.test[0][3], test_reference[3]["image"])


def test_a_tfds_dataset_streams_through_training(mock_tfds, tmp_path):
  from configs import mnist_mlp  # pylint: disable=import-outside-toplevel
  from jaxlearn.training import train  # pylint: disable=import-outside-toplevel
  config = mnist_mlp.get_config()
  config.data.source, config.data.pipeline, config.data.split_ratios = "tfds", "grain", "3:1:1"
  config.batch_size = config.eval_batch_size = 4
  config.num_epochs, config.progress_bar, config.compilation_cache_dir = 2, False, ""
  # TFDS's mock lives in this process only: Grain reads here, in threads, not in workers.
  config.data.workers = 0
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["epochs_run"] == 2 and 0.0 <= summary["test_accuracy"] <= 1.0
  assert '"input_wait"' in open(tmp_path / "metrics.jsonl").read()  # It streamed.
