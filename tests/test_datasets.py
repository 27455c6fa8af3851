"""The dataset kinds: text, tables, CIFAR-10 files, generated and custom data; no leakage."""

import json
import os

import ml_collections
import numpy as np
import pytest

from jaxlearn import data
from jaxlearn.config import default_config
from jaxlearn.data import pipeline, sources, tabular, text
from jaxlearn.errors import ConfigError, DataError
from jaxlearn.training import train
from tests.conftest import (make_fake_cifar10, make_fake_mnist, make_fake_text, make_titanic_csv,
                            real_data_dir)


def _data_config(**fields):
  config = ml_collections.ConfigDict(default_config().data.to_dict())
  config.update(fields)
  return config


# --- text ---------------------------------------------------------------------------------

def test_tokenizer_splits_words_contractions_and_punctuation():
  assert text.tokenize("It's a GREAT film, isn't it?<br />Yes!") == [
      "it", "'s", "a", "great", "film", ",", "isn", "'t", "it", "?", "yes", "!"]


def test_vocabulary_comes_from_train_only_and_unknown_words_map_to_1():
  raw = sources.RawData("text", (np.array(["good good film", "bad film", "good", "film"], object),
                                 np.array([1, 0, 1, 0])),
                        (np.array(["excellent film"], object), np.array([1])))
  splits = pipeline.make_splits(raw, _data_config(max_length=4, val_fraction=0.25), seed=0)
  vocabulary = splits.preprocessing["vocabulary"]
  assert "excellent" not in vocabulary  # Only in the test split.
  assert min(vocabulary.values()) == 2  # 0 is padding, 1 unknown.
  test_ids = splits.test["inputs"][0]
  assert test_ids[0] == text.UNK and test_ids[1] == vocabulary["film"]
  np.testing.assert_array_equal(test_ids[2:], [text.PAD, text.PAD])


def test_encode_truncates_and_pads():
  vocabulary = {"a": 2, "b": 3}
  np.testing.assert_array_equal(text.encode(["a b a b a", "b"], vocabulary, 3),
                                [[2, 3, 2], [3, 0, 0]])


def test_vocabulary_keeps_the_most_frequent_words():
  vocabulary = text.build_vocabulary(["x y y z z z"], max_size=4, min_count=1)
  assert vocabulary == {"z": 2, "y": 3}


def test_real_sst2_counts_and_dev_as_test():
  root = real_data_dir()
  if not os.path.exists(os.path.join(root, "sst2", "train.tsv")):
    pytest.skip("real SST-2 not found")
  raw = data.load_raw(_data_config(name="sst2", dir=root))
  assert len(raw.train[0]) == 67349 and len(raw.test[0]) == 872
  assert raw.train[1].sum() == 37569 and raw.test[1].sum() == 444  # Positives, as published.


def test_empty_text_file_is_reported(tmp_path):
  make_fake_text(tmp_path, "sst2")
  (tmp_path / "sst2" / "dev.tsv").write_text("")
  with pytest.raises(DataError, match="dev.tsv holds no examples \\(it is empty or has only a "
                     "header\\); the file is truncated: download it again"):
    data.load_raw(_data_config(name="sst2", dir=str(tmp_path)))


def test_imdb_from_csv_and_from_aclimdb_folders(tmp_path):
  make_fake_text(tmp_path / "csv", "imdb", num_train=20, num_test=10)
  raw = data.load_raw(_data_config(name="imdb", dir=str(tmp_path / "csv")))
  assert raw.class_names == ("negative", "positive") and len(raw.test[0]) == 10
  for split in ("train", "test"):
    for label, polarity in enumerate(("neg", "pos")):
      folder = tmp_path / "folders" / "imdb" / "aclImdb" / split / polarity
      folder.mkdir(parents=True)
      (folder / "0_1.txt").write_text(f"{polarity} review<br />of {split}")
  raw = data.load_raw(_data_config(name="imdb", dir=str(tmp_path / "folders")))
  assert list(raw.train[1]) == [0, 1] and raw.train[0][1] == "pos review<br />of train"


def test_missing_sst2_files_say_how_to_get_them(tmp_path):
  (tmp_path / "sst2").mkdir()
  with pytest.raises(DataError, match="No sst2 data: train.tsv, dev.tsv not found in .*GLUE"):
    data.load_raw(_data_config(name="sst2", dir=str(tmp_path), source="local"))
  with pytest.raises(DataError, match="No sst2 data: its files are not in .*sst2, and "
                                      "downloading http://127.0.0.1:9/sst2/train.tsv failed"):
    data.load_raw(_data_config(name="sst2", dir=str(tmp_path)))


# --- tables -------------------------------------------------------------------------------

def test_csv_encoding_is_fitted_on_train_only(tmp_path):
  path = make_titanic_csv(tmp_path / "titanic.csv")
  config = _data_config(name="csv", path=path, target_column="Survived",
                        drop_columns="PassengerId,Name,Ticket,Cabin")
  raw = data.load_raw(config)
  assert raw.columns == ("Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked")
  splits = pipeline.make_splits(raw, config, seed=0)
  assert [len(s["targets"]) for s in splits[:3]] == [280, 80, 40]  # 7:2:1 by default.
  encoder = {c["name"]: c for c in splits.preprocessing["columns"]}
  assert encoder["Sex"]["categories"] == ["female", "male"]
  assert encoder["Embarked"]["categories"] == ["", "C", "Q", "S"]
  # Numbers: standardised with train statistics, missing ages filled with the train mean.
  train_x = splits.train["inputs"]
  age = train_x[:, 3]  # Pclass, then the two Sex columns, then Age.
  assert abs(age.mean()) < 1e-5 and abs(age.std() - 1) < 0.15
  assert train_x.shape[1] == 1 + 2 + 1 + 1 + 1 + 1 + 4


def test_table_encoder_against_hand_values():
  cells = np.array([["1", "a"], ["3", "b"], ["", "a"]], object)
  encoder = tabular.fit_table_encoder(cells, ("x", "kind"))
  assert encoder[0]["mean"] == 2.0 and encoder[0]["std"] == 1.0
  out = tabular.encode_table(np.array([["5", "c"], ["", "b"]], object), encoder)
  np.testing.assert_array_equal(out, [[3.0, 0, 0], [0.0, 0, 1]])  # Unseen category: zeros.


def test_csv_without_the_target_column_is_reported(tmp_path):
  path = make_titanic_csv(tmp_path / "titanic.csv", n=20)
  config = _data_config(name="csv", path=path, target_column="survived")
  with pytest.raises(DataError, match="has no target column 'survived'; its columns are "
                     "\\['PassengerId', 'Survived', .*Set --config.data.target_column"):
    data.load_raw(config)


def test_empty_csv_is_reported(tmp_path):
  (tmp_path / "empty.csv").write_text("")
  with pytest.raises(DataError, match="empty.csv is empty; a CSV file needs a header row"):
    data.load_raw(_data_config(name="csv", path=str(tmp_path / "empty.csv"),
                               target_column="y"))


def _table(tmp_path, text):
  (tmp_path / "t.csv").write_text(text)
  return _data_config(name="csv", path=str(tmp_path / "t.csv"), target_column="y")


def test_a_few_text_cells_in_a_numeric_column_are_named_not_made_categories(tmp_path):
  rows = "".join(f"{i},{i % 2}\n" for i in range(30))
  config = _table(tmp_path, "age,y\n" + rows + "abc,1\n" + rows + "?,0\n")
  with pytest.raises(DataError, match=r"column 'age' is numeric in 60 of 61 cells but holds text "
                     r"on line 32 \('abc'\); fix those cells"):
    data.load_raw(config)


def test_an_infinite_cell_is_named_with_its_line(tmp_path):
  config = _table(tmp_path, "x,y\n1,0\n2,1\ninf,0\n")
  with pytest.raises(DataError, match=r"column 'x' holds an infinite number on line 4 \('inf'\)"):
    data.load_raw(config)
  config = _table(tmp_path, "x,y\n1,0\n2,-inf\n")
  with pytest.raises(DataError, match=r"the target column 'y' holds '-inf' on line 3"):
    data.load_raw(config)


@pytest.mark.parametrize("no,yes", [("no", "yes"), ("False", "True"), ("N", "Y"),
                                    ("negative", "positive")])
def test_common_binary_labels_read_as_0_and_1(tmp_path, no, yes):
  raw = data.load_raw(_table(tmp_path, f"x,y\n1,{yes}\n2,{no}\n3,{yes}\n"))
  np.testing.assert_array_equal(raw.train[1], [1, 0, 1])
  assert raw.class_names == (no.lower(), yes.lower())


def test_class_names_of_any_two_words_are_kept_for_reports(tmp_path):
  rows = "".join(f"{i},{'dog' if i % 3 else 'cat'}\n" for i in range(30))
  config = _table(tmp_path, "x,y\n" + rows)
  raw = data.load_raw(config)
  assert raw.class_names == ("cat", "dog")
  np.testing.assert_array_equal(raw.train[1][:4], [0, 1, 1, 0])
  splits = data.make_splits(raw, config, seed=0)
  assert splits.preprocessing["class_names"] == ["cat", "dog"]


@pytest.mark.parametrize("name,first,last", [("mnist", "0", "9"),
                                             ("fashion_mnist", "T-shirt/top", "Ankle boot")])
def test_image_datasets_keep_their_class_names(tmp_path, name, first, last):
  root = make_fake_mnist(tmp_path, name=name)
  config = _data_config(name=name, dir=root)
  splits = data.make_splits(data.load_raw(config), config, seed=0)
  names = splits.preprocessing["class_names"]
  assert len(names) == 10 and names[0] == first and names[-1] == last


def test_files_jaxlearn_writes_are_valid_json_even_with_nan(small_config, tmp_path):
  from jaxlearn.runs import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  from jaxlearn.training import reporting  # pylint: disable=import-outside-toplevel
  assert workdir_lib.json_safe({"a": [1.0, float("nan")], "b": float("inf"), "c": "x"}) == {
      "a": [1.0, None], "b": None, "c": "x"}
  reporter = reporting.Reporter(str(tmp_path))
  reporter.write(3, "train", {"loss": float("nan")}, echo=False)
  reporter.close()
  assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 3, "split": "train",
                                                                   "loss": None}


# --- images -------------------------------------------------------------------------------

def test_cifar10_binary_batches_are_read_as_nhwc(tmp_path):
  make_fake_cifar10(tmp_path, per_batch=8, num_test=4)
  raw = data.load_raw(_data_config(name="cifar10", dir=str(tmp_path)))
  assert raw.train[0].shape == (40, 32, 32, 3) and raw.test[0].shape == (4, 32, 32, 3)
  records = np.fromfile(tmp_path / "cifar10" / "data_batch_1.bin", np.uint8).reshape(8, -1)
  np.testing.assert_array_equal(raw.train[0][0, :, :, 1], records[0, 1 + 1024:1 + 2048]
                                .reshape(32, 32))
  assert raw.train[1][0] == records[0, 0]


def test_truncated_cifar10_batch_is_reported(tmp_path):
  make_fake_cifar10(tmp_path, per_batch=8, num_test=4)
  path = tmp_path / "cifar10" / "test_batch.bin"
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(DataError, match="test_batch.bin holds 12192 bytes, not a whole number of "
                     "3073-byte CIFAR-10 records"):
    data.load_raw(_data_config(name="cifar10", dir=str(tmp_path)))


def test_fitted_normalisation_uses_the_train_split_only(tmp_path):
  root = make_fake_mnist(tmp_path)
  config = _data_config(dir=root)
  raw = data.load_raw(config)
  splits = pipeline.make_splits(raw, config, seed=0)
  mean = splits.preprocessing["mean"][0]
  # The train split is standardised exactly; the pooled train+test pixels give another mean.
  assert abs(splits.train["inputs"].mean()) < 1e-4
  pooled = np.concatenate([raw.train[0], raw.test[0]]).mean() / 255
  assert mean != pytest.approx(pooled, abs=1e-6)


def test_real_fashion_mnist_has_6000_of_each_class():
  root = real_data_dir()
  if not os.path.exists(os.path.join(root, "fashion_mnist", "train-images-idx3-ubyte.gz")):
    pytest.skip("real Fashion-MNIST not found")
  raw = data.load_raw(_data_config(name="fashion_mnist", dir=root))
  np.testing.assert_array_equal(np.bincount(raw.train[1]), [6000] * 10)
  assert raw.test[0].shape == (10000, 28, 28, 1)


def test_image_of_the_wrong_shape_for_the_model_is_named(tmp_path):
  config = default_config()
  config.model.name = "lenet5"
  config.batch_size = 16
  config.progress_bar = False
  rng = np.random.default_rng(0)
  raw = data.from_arrays(train=(rng.integers(0, 255, (64, 32, 32, 3), dtype=np.uint8),
                                rng.integers(0, 10, 64)))
  with pytest.raises(ConfigError, match="Model 'lenet5' cannot take this data: inputs shaped "
                     "\\(32, 32, 3\\) \\(float32\\) per example and targets shaped \\(\\); "
                     "it takes images shaped \\(28, 28, 3\\) "):
    train.train_and_evaluate(config, str(tmp_path / "w"), raw=raw)
  assert not os.path.exists(tmp_path / "w")


# --- generated and custom data --------------------------------------------------------------

def test_synthetic_linear_follows_its_formula():
  raw = data.load_raw(_data_config(name="synthetic_linear", noise_std=0.0, num_examples=50))
  x, y = raw.train
  np.testing.assert_allclose(y, x @ np.array([2.0, -3.4]) + 4.2, rtol=1e-5, atol=1e-5)
  assert raw.test is None


def test_custom_source_with_an_odd_example_is_reported():

  class Source:  # Grain-style: __len__ and __getitem__.
    def __len__(self):
      return 4

    def __getitem__(self, i):
      shape = (28, 28) if i != 2 else (27, 28)
      return {"inputs": np.zeros(shape, np.uint8), "targets": i % 2}

  with pytest.raises(DataError, match="source\\[2\\] has inputs of shape \\(27, 28\\) but "
                     "source\\[0\\] has \\(28, 28\\)"):
    data.from_source(Source())


def test_custom_arrays_infer_their_kind():
  images_raw = data.from_arrays((np.zeros((5, 8, 8), np.uint8), np.arange(5)))
  assert images_raw.kind == "image" and images_raw.train[0].shape == (5, 8, 8, 1)
  assert data.from_arrays((np.array(["a b", "c"]), np.array([0, 1]))).kind == "text"
  assert data.from_arrays((np.zeros((5, 3)), np.zeros(5))).kind == "features"
  with pytest.raises(DataError, match="train split has 5 inputs but 4 targets"):
    data.from_arrays((np.zeros((5, 3)), np.zeros(4)))


def test_training_curves_are_plotted_from_the_history(small_config, tmp_path):
  pytest.importorskip("matplotlib")
  from jaxlearn.evaluation import curves as curves_lib
  summary = train.train_and_evaluate(small_config, str(tmp_path / "run"))
  curves = curves_lib.plot_history(summary, str(tmp_path / "curves.png"))
  assert curves["accuracy"]["val"] == [h["val_accuracy"] for h in summary["history"]]
  assert curves["loss"]["train"] == [h["train_loss"] for h in summary["history"]]
  assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_sst2_from_tfds_uses_validation_as_test(monkeypatch):

  class FakeTfds:
    calls = []

    @classmethod
    def load(cls, name, split, **kwargs):
      cls.calls.append((name, split))
      make = lambda n: [{"sentence": np.array([b"a fine film"] * n), "label": np.arange(n) % 2,
                         "idx": np.arange(n)}]
      info = type("Info", (), {"features": {}})
      return [make(6), make(4)], info

    @staticmethod
    def as_numpy(tree):
      return tree

  monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", FakeTfds)
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  raw = data.load_raw(_data_config(name="sst2", source="tfds"))
  assert FakeTfds.calls == [("glue/sst2", ["train", "validation"])]
  assert raw.kind == "text" and raw.train[0][0] == "a fine film" and len(raw.test[1]) == 4
