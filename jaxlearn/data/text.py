"""Text datasets (SST-2, IMDB reviews) and the word tokenizer fitted on the training split.

Token id 0 is padding and 1 an unknown word, so a model finds each sequence's
true length as the number of non-zero ids.
"""

import collections
import csv
import functools
import glob
import os
import re

import numpy as np

from jaxlearn.data.sources import RawData, check_pairs, elsewhere, labels_to_ids, load_tfds
from jaxlearn.data.sources import local_or_tfds
from jaxlearn.errors import ConfigError, DataError, MissingFilesError

PAD, UNK = 0, 1
SST2_CLASSES = ("negative", "positive")  # GLUE's label 0 and 1
_WORD = re.compile(r"[a-z0-9]+|'[a-z]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
  """Lower-cased words, contractions ('s, n't) and punctuation marks, in order."""
  return _WORD.findall(text.lower().replace("<br />", " "))


def build_vocabulary(texts, max_size: int, min_count: int) -> dict[str, int]:
  """word -> id for the `max_size` most frequent words seen `min_count` times (ids from 2)."""
  if max_size < 3:
    raise ConfigError(f"config.data.vocab_size={max_size}; it counts padding and unknown too, so "
                      "use at least 3 (typically 10000-30000).")
  counts = collections.Counter(word for text in texts for word in tokenize(text))
  kept = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
  return {word: i + 2 for i, word in enumerate(kept[:max_size - 2])}


def encode(texts, vocabulary: dict[str, int], max_length: int) -> np.ndarray:
  """(N, max_length) int32 ids, truncated or padded with PAD at the end."""
  ids = np.full((len(texts), max_length), PAD, np.int32)
  for row, text in enumerate(texts):
    words = [vocabulary.get(w, UNK) for w in tokenize(text)][:max_length]
    ids[row, :len(words)] = words
  return ids


def load_sst2(data_config) -> RawData:
  """SST-2 from GLUE's TSV files in ROOT/sst2/ (train.tsv, dev.tsv) or TFDS glue/sst2.

  GLUE's test labels are hidden, so the labelled dev set is the test split here;
  validation is held out from train.
  """
  return local_or_tfds(data_config, _read_sst2_dir,
                       functools.partial(_tfds_text, data_config, "glue/sst2",
                                         ("train", "validation"), "sentence", _how_to_get_sst2),
                       _how_to_get_sst2)


def load_imdb(data_config) -> RawData:
  """IMDB reviews from ROOT/imdb/ (aclImdb's pos/neg folders, or train.csv/test.csv) or TFDS."""
  return local_or_tfds(data_config, _read_imdb_dir,
                       functools.partial(_tfds_text, data_config, "imdb_reviews",
                                         ("train", "test"), "text", _how_to_get_imdb),
                       _how_to_get_imdb)


def read_labelled_table(path: str, text_column: str, label_column: str,
                        delimiter: str) -> tuple[np.ndarray, np.ndarray]:
  """(texts, labels) from a CSV/TSV file with a header row naming both columns."""
  if not os.path.exists(path):
    raise DataError(f"{path} not found.")
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t"
                            else csv.QUOTE_MINIMAL)
    rows = list(reader)
    columns = reader.fieldnames or []
  if not rows:
    raise DataError(f"{path} holds no examples (it is empty or has only a header); the file is "
                    "truncated: download it again.")
  missing = [c for c in (text_column, label_column) if c not in columns]
  if missing:
    raise DataError(f"{path} has no column {missing} (its header names {columns}); a labelled "
                    f"text file needs '{text_column}' and '{label_column}' columns.")
  texts = np.array([row[text_column] or "" for row in rows], object)
  labels = [row[label_column] for row in rows]
  return texts, np.array([int(x) if x.strip().lstrip("-").isdigit() else x for x in labels])


def _read_sst2_dir(directory: str) -> RawData:
  nested = os.path.join(directory, "SST-2")  # GLUE's SST-2.zip, unpacked
  if os.path.isdir(nested):
    directory = nested
  paths = [os.path.join(directory, f) for f in ("train.tsv", "dev.tsv")]
  missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
  if missing:
    raise MissingFilesError(_how_to_get_sst2(f"{', '.join(missing)} not found in {directory}"))
  (train_x, train_y), (test_x, test_y) = (
      read_labelled_table(p, "sentence", "label", "\t") for p in paths)
  return RawData("text", (train_x, labels_to_ids(train_y)[0]), (test_x, labels_to_ids(test_y)[0]),
                 class_names=SST2_CLASSES)


def _read_imdb_dir(directory: str) -> RawData:
  folders = os.path.join(directory, "aclImdb")
  if os.path.isdir(folders) or os.path.isdir(os.path.join(directory, "train", "pos")):
    base = folders if os.path.isdir(folders) else directory
    train, test = (_read_pos_neg_folders(os.path.join(base, s)) for s in ("train", "test"))
    return RawData("text", train, test, class_names=("neg", "pos"))
  paths = [os.path.join(directory, f) for f in ("train.csv", "test.csv")]
  if not all(os.path.exists(p) for p in paths):
    raise MissingFilesError(_how_to_get_imdb(
        f"neither aclImdb/ nor train.csv + test.csv in {directory}"))
  (train_x, train_y), (test_x, test_y) = (
      read_labelled_table(p, "text", "label", ",") for p in paths)
  train_y, names = labels_to_ids(train_y)
  return RawData("text", (train_x, train_y), (test_x, labels_to_ids(test_y, names)[0]),
                 class_names=names)


def _read_pos_neg_folders(directory: str) -> tuple[np.ndarray, np.ndarray]:
  texts, labels = [], []
  for label, polarity in enumerate(("neg", "pos")):
    for path in sorted(glob.glob(os.path.join(directory, polarity, "*.txt"))):
      with open(path, encoding="utf-8") as f:
        texts.append(f.read())
      labels.append(label)
  check_pairs(texts, labels, f"{directory}/{{neg,pos}}/*.txt")
  return np.array(texts, object), np.array(labels, np.int32)


def _tfds_text(data_config, tfds_name, splits, text_key, how_to_get) -> RawData:
  loaded, class_names = load_tfds(data_config, splits, how_to_get, tfds_name=tfds_name)
  as_arrays = lambda s: (np.array([t.decode("utf-8") for t in s[text_key]], object),
                         np.asarray(s["label"], np.int32))
  return RawData("text", *(as_arrays(s) for s in loaded), class_names=class_names)


def _how_to_get_sst2(reason: str) -> str:
  return (f"No sst2 data: {reason}. Put GLUE's SST-2 train.tsv and dev.tsv (columns 'sentence' "
          "and 'label', from https://gluebenchmark.com/tasks) in ROOT/sst2/ "
          f"{elsewhere('sst2')}")


def _how_to_get_imdb(reason: str) -> str:
  return (f"No imdb data: {reason}. Unpack aclImdb_v1.tar.gz (https://ai.stanford.edu/~amaas/"
          "data/sentiment/) into ROOT/imdb/, or put train.csv and test.csv with 'text' and "
          f"'label' columns there, {elsewhere('imdb')}")
