"""Ask a trained run about new inputs: top-k classes with their probabilities.

  python -m jaxlearn.predict --workdir=W digit.png photo.jpg array.npy
  python -m jaxlearn.predict --workdir=W --text "a gripping, funny film" --text "dull"
  python -m jaxlearn.predict --workdir=W reviews.txt        # text: one example per line
  python -m jaxlearn.predict --workdir=W passengers.csv     # tables: the training columns
  ... --top_k=3 --json                                      # one JSON object per line

Images of any size and mode are converted as the run's data was (channels,
size); each conversion that training did not do is printed with the result.
In Python: `jaxlearn.load_predictor(W).predict(inputs)`.
"""

import csv
import json
import os
import sys

from jaxlearn import inference, inputs as inputs_lib
from jaxlearn.errors import InputError


def gather_inputs(paths: list[str], texts: list[str], spec: inputs_lib.InputSpec):
  """(label, raw input) pairs from the command line: files, and --text values."""
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
  """One record per input: {"input", "top" | "probability" | "value", "notes"}."""
  encoded = []
  for label, raw in pairs:
    try:
      encoded.append(inputs_lib.encode(raw, predictor.spec, invert))
    except InputError as e:
      message = str(e)  # File errors name the file already; others get the input's label.
      raise InputError(message if message.startswith(label) else f"{label}: {message}") from None
  import numpy as np  # pylint: disable=import-outside-toplevel
  outputs = predictor.predict_stored(np.stack([array for array, _ in encoded]))
  records = predictor.describe(outputs, top_k)
  return [{"input": label, **record, **({"notes": notes} if notes else {})}
          for (label, _), record, (_, notes) in zip(pairs, records, encoded)]


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
  with open(path, encoding="utf-8") as f:
    return [(f"{path}:{i}", line.rstrip("\n")) for i, line in enumerate(f, 1) if line.strip()]


def _rows(path: str) -> list[tuple[str, dict]]:
  if not os.path.exists(path):
    raise InputError(f"{path} not found.")
  with open(path, newline="", encoding="utf-8") as f:
    return [(f"{path}:{i}", row) for i, row in enumerate(csv.DictReader(f), 2)]


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  predictor = inference.load_predictor(values.workdir)
  pairs = gather_inputs(argv[1:], values.text or [], predictor.spec)
  for record in predict_records(predictor, pairs, values.top_k, values.invert):
    print(json.dumps(record) if values.json else format_record(record))
  sys.stdout.flush()


if __name__ == "__main__":
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  from jaxlearn import cli  # pylint: disable=g-import-not-at-top
  _flags.DEFINE_string("workdir", None, "A finished training run's workdir.")
  _flags.DEFINE_integer("top_k", 3, "Classes shown per input (classification).", lower_bound=1)
  _flags.DEFINE_bool("json", False, "Print one JSON object per input and line.")
  _flags.DEFINE_multi_string("text", None, "A text to classify (text models); repeatable.")
  _flags.DEFINE_bool("invert", False, "Images: use 255 - pixel (dark ink on light paper for a "
                     "model trained on light strokes on black, as MNIST's).")
  _flags.mark_flags_as_required(["workdir"])
  cli.run(main)
