"""Predictions on the inputs a command line names: files, lines of text, table rows.

What `python -m jaxlearn.predict` runs: each path or --text becomes (label, raw
input) pairs by what the model takes, then one record per input with its
top-k classes (or probability, or value) and the conversions made.
"""

import csv
import os

from jaxlearn.errors import InputError
from jaxlearn.runs import inference, inputs as inputs_lib


def gather_inputs(paths: list[str], texts: list[str], spec: inputs_lib.InputSpec):
  """(label, raw input) pairs from the command line: files, and --text values."""
  if texts and spec.kind != "text":
    raise InputError(f"--text is for text models; this model takes {spec.describe()}: pass "
                     "files instead.")
  pairs = [(text, text) for text in texts]
  for path in paths:
    if spec.kind == "text":
      pairs += _lines(path)
    elif spec.kind == "table" and path.endswith(".csv"):
      pairs += _rows(path)
    elif spec.kind == "image" or path.endswith(".npy"):
      pairs.append((path, path))
    else:
      raise InputError(f"{path}: this model takes {spec.describe()}; pass a .npy file.")
  if not pairs:
    raise InputError(f"No inputs given; pass files (this model takes {spec.describe()})"
                     f"{' or --text' if spec.kind == 'text' else ''}.")
  return pairs


def predict_records(predictor: inference.Predictor, pairs, top_k: int,
                    invert: bool = False) -> list[dict]:
  """One record per input, in order: {"input", "top" | "probability" | "value", "notes"}, or
  {"input", "error"} for one that cannot be read, as batch tools treat a list of files: every
  readable input is predicted."""
  encoded, records = {}, [None] * len(pairs)
  for i, (label, raw) in enumerate(pairs):
    try:
      encoded[i] = inputs_lib.encode(raw, predictor.spec, invert)
    except InputError as e:
      message = str(e)  # File errors name the file already; others get the input's label.
      records[i] = {"input": label,
                    "error": message if message.startswith(label) else f"{label}: {message}"}
  if encoded:
    import numpy as np  # pylint: disable=import-outside-toplevel
    outputs = predictor.predict_stored(np.stack([array for array, _ in encoded.values()]))
    for i, record in zip(encoded, predictor.describe(outputs, top_k)):
      notes = encoded[i][1]
      records[i] = {"input": pairs[i][0], **record, **({"notes": notes} if notes else {})}
  return records


def format_record(record: dict) -> str:
  """A record as lines a person reads."""
  notes = f"  ({'; '.join(record['notes'])})" if record.get("notes") else ""
  lines = [f"{record['input']}{notes}"]
  if "top" in record:
    lines += [f"  {t['probability']:8.2%}  {t['name']}" + (f" (class {t['class']})"
                                                           if t["name"] != str(t["class"]) else "")
              for t in record["top"]]
  elif "probability" in record:
    lines.append(f"  P({record['name'] if record['class'] else 'class 1'}) = "
                 f"{record['probability']:.4f} -> {record['name']}")
  else:
    lines.append(f"  value: {record['value']}")
  return "\n".join(lines)


def _lines(path: str) -> list[tuple[str, str]]:
  if not os.path.exists(path):
    raise InputError(f"{path} not found.")
  try:
    with open(path, encoding="utf-8") as f:
      return [(f"{path}:{i}", line.rstrip("\n")) for i, line in enumerate(f, 1) if line.strip()]
  except UnicodeDecodeError as e:
    raise InputError(f"{path} is not a UTF-8 text file; this model takes text: a file with "
                     "one example per line, or --text.") from e


def _rows(path: str) -> list[tuple[str, dict]]:
  if not os.path.exists(path):
    raise InputError(f"{path} not found.")
  with open(path, newline="", encoding="utf-8") as f:
    return [(f"{path}:{i}", row) for i, row in enumerate(csv.DictReader(f), 2)]
