"""Tabular data: a CSV file with a header, numeric and categorical columns, missing cells.

The encoder is fitted on the training split only: numeric columns are filled
(missing -> the train mean) and standardised with train statistics;
categorical columns become one-hot over the categories seen in train (an
unseen category is all zeros).
"""

import csv
import os

import numpy as np

from jaxlearn.data.sources import RawData, labels_to_ids, resolve_data_dir
from jaxlearn.errors import ConfigError, DataError

MISSING = ("", "na", "nan", "n/a", "null", "none", "?")


def load_csv(data_config) -> RawData:
  """The CSV at config.data.path, with config.data.target_column as the target."""
  path = _resolve_path(data_config)
  target = data_config.target_column
  if not target:
    raise ConfigError("config.data.target_column is empty; name the CSV column to predict, e.g. "
                      "--config.data.target_column=Survived.")
  columns, rows = _read_rows(path)
  if target not in columns:
    raise DataError(f"{path} has no target column {target!r}; its columns are {columns}. Set "
                    "--config.data.target_column to one of them.")
  dropped = [c.strip() for c in data_config.drop_columns.split(",") if c.strip()]
  unknown = sorted(set(dropped) - set(columns))
  if unknown:
    raise ConfigError(f"config.data.drop_columns names {unknown}, which {path} does not have; "
                      f"its columns are {columns}.")
  features = [c for c in columns if c != target and c not in dropped]
  cells = np.array([[row[columns.index(c)] for c in features] for row in rows], object)
  for j, name in enumerate(features):
    _check_column(cells[:, j], name, path)
  targets, class_names = _parse_targets([row[columns.index(target)] for row in rows], path,
                                        target)
  return RawData("table", (cells, targets), columns=tuple(features), class_names=class_names)


def fit_table_encoder(cells: np.ndarray, columns: tuple) -> list[dict]:
  """Per column: {"name", "mean", "std"} if numeric, else {"name", "categories"}."""
  encoder = []
  for j, name in enumerate(columns):
    values = cells[:, j]
    numbers = _as_numbers(values)
    if numbers is None:
      encoder.append({"name": name, "categories": sorted({str(v).strip() for v in values})})
    else:
      present = numbers[~np.isnan(numbers)]
      mean = float(present.mean()) if present.size else 0.0
      std = float(present.std()) if present.size else 1.0
      encoder.append({"name": name, "mean": mean, "std": std if std > 0 else 1.0})
  return encoder


def encode_table(cells: np.ndarray, encoder: list[dict]) -> np.ndarray:
  """float32 features (N, width): standardised numbers and one-hot categories."""
  parts = []
  for j, column in enumerate(encoder):
    values = cells[:, j]
    if "categories" in column:
      index = {c: i for i, c in enumerate(column["categories"])}
      one_hot = np.zeros((len(values), len(index)), np.float32)
      for row, value in enumerate(values):
        if str(value).strip() in index:
          one_hot[row, index[str(value).strip()]] = 1.0
      parts.append(one_hot)
    else:
      numbers = _as_numbers(values)
      if numbers is None:
        raise DataError(f"Column {column['name']!r} was numeric in the training split but holds "
                        "text here; clean the file or drop the column "
                        "(--config.data.drop_columns).")
      numbers = np.where(np.isnan(numbers), column["mean"], numbers)
      parts.append(((numbers - column["mean"]) / column["std"])[:, None].astype(np.float32))
  return np.concatenate(parts, axis=1) if parts else np.zeros((len(cells), 0), np.float32)


def _resolve_path(data_config) -> str:
  path = data_config.path
  if not path:
    raise ConfigError("config.data.path is empty; set it to the CSV file to train on.")
  root = resolve_data_dir(data_config)
  if not os.path.exists(path) and root and os.path.exists(os.path.join(root, path)):
    path = os.path.join(root, path)
  if not os.path.exists(path):
    raise DataError(f"CSV file {path} not found (config.data.path, relative to the working "
                    "directory or to the data root config.data.dir / $JAXLEARN_DATA_DIR).")
  return path


def _read_rows(path: str) -> tuple[list[str], list[list[str]]]:
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  if not rows or not rows[0]:
    raise DataError(f"{path} is empty; a CSV file needs a header row and one row per example.")
  columns, rows = [c.strip() for c in rows[0]], [r for r in rows[1:] if r]
  if not rows:
    raise DataError(f"{path} has a header but no examples.")
  ragged = next((i for i, r in enumerate(rows) if len(r) != len(columns)), None)
  if ragged is not None:
    raise DataError(f"{path} line {ragged + 2} has {len(rows[ragged])} cells but the header "
                    f"has {len(columns)}; the file is malformed.")
  return columns, rows


# Two-valued targets read as 0/1 (case-insensitive), whichever task uses them.
BINARY_WORDS = ({"no": 0, "yes": 1}, {"false": 0, "true": 1}, {"n": 0, "y": 1}, {"f": 0, "t": 1},
                {"negative": 0, "positive": 1})


def _check_column(values: np.ndarray, name: str, path: str) -> None:
  """Fails on a mostly numeric column with a few text cells, or on an infinite number."""
  texts = [str(v).strip() for v in values]
  present = [(i, t) for i, t in enumerate(texts) if t.lower() not in MISSING]
  parsed = [(i, t, _number(t)) for i, t in present]
  not_numbers = [(i, t) for i, t, x in parsed if x is None]
  infinite = [(i, t) for i, t, x in parsed if x is not None and not np.isfinite(x)]
  if infinite:
    lines = ", ".join(f"line {i + 2} ({t!r})" for i, t in infinite[:5])
    raise DataError(f"{path}: column {name!r} holds an infinite number on {lines}; fix those "
                    "cells, leave them empty (missing: filled with the train mean), or drop the "
                    "column (--config.data.drop_columns).")
  if not_numbers and len(not_numbers) * 2 < len(present):
    lines = ", ".join(f"line {i + 2} ({t!r})" for i, t in not_numbers[:5])
    raise DataError(f"{path}: column {name!r} is numeric in {len(present) - len(not_numbers)} of "
                    f"{len(present)} cells but holds text on {lines}"
                    f"{' and more' if len(not_numbers) > 5 else ''}; fix those cells, leave them "
                    "empty (missing), or drop the column (--config.data.drop_columns).")


def _number(text: str) -> float | None:
  try:
    return float(text)
  except ValueError:
    return None


def _parse_targets(values: list[str], path: str, target: str) -> tuple[np.ndarray, tuple]:
  """The targets as numbers (class ids or values), and the class names of word targets."""
  missing = [i + 2 for i, v in enumerate(values) if v.strip().lower() in MISSING]
  if missing:
    raise DataError(f"{path}: the target column {target!r} is empty on line(s) "
                    f"{missing[:5]}; remove those rows or fill them in.")
  words = {v.strip().lower() for v in values}
  for pair in BINARY_WORDS:
    if words <= set(pair):
      return np.array([pair[v.strip().lower()] for v in values], np.int32), tuple(pair)
  numbers = _as_numbers(np.array(values, object))
  if numbers is not None and not np.isfinite(numbers).all():
    line = int(np.flatnonzero(~np.isfinite(numbers))[0]) + 2
    raise DataError(f"{path}: the target column {target!r} holds {values[line - 2].strip()!r} "
                    f"on line {line}; targets must be finite numbers or class names.")
  if numbers is None:  # Class names: ids in sorted order of the names.
    return labels_to_ids(np.array([v.strip() for v in values]))
  if np.all(numbers == np.round(numbers)):
    return numbers.astype(np.int32), ()
  return numbers.astype(np.float32), ()


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
  """float64 with NaN for missing cells, or None if any present cell is not a number."""
  out = np.empty(len(values), np.float64)
  for i, value in enumerate(values):
    text = str(value).strip()
    if text.lower() in MISSING:
      out[i] = np.nan
      continue
    try:
      out[i] = float(text)
    except ValueError:
      return None
  return out
