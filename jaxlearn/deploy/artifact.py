"""The exported artifact: DIR/model.jax and DIR/metadata.json, one format for every writer.

`jaxlearn.deploy.export`, `quantize` and `ensemble` write it; `serve
--export_dir` reads it. model.jax is a serialized `jax.export` program
(StableHLO) with the weights inside and a symbolic batch dimension;
metadata.json holds the input's shape and dtype, the class names, the
vocabulary or table encoder that builds inputs, the source run and its test
metrics. To run it, only JAX and NumPy:

  import jax, numpy as np
  program = jax.export.deserialize(open("DIR/model.jax", "rb").read())
  probabilities = program.call(np.zeros((7, 28, 28, 1), np.uint8))

It takes inputs as stored (uint8 pixels (batch, H, W, C), normalised inside;
int32 token ids (batch, length); float32 encoded table features) and returns
float32 probabilities (batch, classes), P(positive) (batch,) for a binary
task, or the values for regression.
"""

import json
import os
import tempfile

import jax

from jaxlearn.errors import InputError
from jaxlearn.runs import finished, workdir as workdir_lib

MODEL_FILE = "model.jax"
METADATA_FILE = "metadata.json"


def check_new(out_dir: str) -> None:
  """Refuses an --out that exists (an earlier export is never overwritten) or cannot be made."""
  if not out_dir:
    raise InputError("--out is empty; pass a new folder for model.jax and metadata.json.")
  if os.path.exists(out_dir):
    raise InputError(f"{out_dir} already exists; pass a new folder to export into (an existing "
                     "one is never overwritten: move it aside or delete it first).")
  parent = os.path.dirname(os.path.abspath(out_dir))
  if os.path.exists(parent) and not os.path.isdir(parent):
    raise InputError(f"--out={out_dir} is under {parent}, which is a file; pass a folder path.")


def write(out_dir: str, exported, metadata: dict) -> None:
  """DIR/model.jax and DIR/metadata.json, each written whole and renamed into place."""
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise InputError(f"Cannot create --out={out_dir} ({e.strerror or e}); pass a folder you can "
                     "write to.") from e
  _write_atomically(os.path.join(out_dir, MODEL_FILE), exported.serialize())
  _write_atomically(os.path.join(out_dir, METADATA_FILE),
                    json.dumps(metadata, indent=2).encode("utf-8"))


def metadata_for(run: finished.Run, exported, platforms) -> dict:
  """metadata.json for a program exported from `run` (see the module docstring)."""
  preprocessing = run.preprocessing
  summary_path = workdir_lib.RunDir(run.workdir).summary
  test_metrics = {}
  if os.path.exists(summary_path):
    with open(summary_path, encoding="utf-8") as f:
      test_metrics = {k: v for k, v in json.load(f).items() if k.startswith("test_")}
  spec = run.spec
  metadata = {
      "format": "jax.export serialized program (StableHLO); "
                "jax.export.deserialize(bytes).call(inputs)",
      "input": {"kind": spec.kind, "shape": ["batch", *spec.shape], "dtype": spec.dtype},
      "output": _describe_output(run),
      "task": run.task,
      "class_names": run.class_names() if run.task != "regression" else [],
      "model": run.config.model.name,
      "source_workdir": run.workdir,
      "test_metrics": test_metrics,
      "platforms": list(platforms),
      "jax_version": jax.__version__,
      "calling_convention_version": exported.calling_convention_version,
  }
  if spec.kind == "image":
    metadata["normalisation"] = {"mean": preprocessing["mean"], "std": preprocessing["std"],
                                 "note": "inside the program: (pixels / 255 - mean) / std"}
  if spec.kind == "text":
    metadata["text"] = {"vocabulary": preprocessing["vocabulary"],
                        "max_length": preprocessing["max_length"],
                        "padding_id": 0, "unknown_id": 1,
                        "tokenizer": "lower-cased; words [a-z0-9]+, contractions 's n't, and "
                                     "each other non-space character (jaxlearn.data.text)"}
  if spec.kind == "table":
    metadata["table_encoder"] = preprocessing["columns"]
  metadata["preprocessing"] = preprocessing
  return metadata


def _describe_output(run: finished.Run) -> dict:
  if run.task == "classification":
    return {"shape": ["batch", len(run.class_names())], "dtype": "float32",
            "meaning": "softmax probabilities per class"}
  if run.task == "binary":
    return {"shape": ["batch"], "dtype": "float32",
            "meaning": f"probability of class 1 ({run.class_names()[1]})"}
  width = run.preprocessing["model_dims"]["out_features"]
  return {"shape": ["batch"] if width == 1 else ["batch", width], "dtype": "float32",
          "meaning": "predicted values"}


def _write_atomically(path: str, data: bytes) -> None:
  """`data` in `path`, renamed into place, readable as the umask allows (a serving account
  may read it; a temporary file alone would be private to its owner)."""
  directory = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile(dir=directory, delete=False) as f:
    f.write(data)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(f.name, 0o666 & ~umask)
  os.replace(f.name, path)


# The platforms jax.export lowers for.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def check_platforms(platforms) -> tuple[str, ...]:
  """`platforms` checked against PLATFORMS (a GPU is "cuda" or "rocm")."""
  platforms = tuple(platforms)
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown or not platforms:
    raise InputError(f"--platforms={','.join(platforms)}: "
                     f"{'unknown ' + ', '.join(unknown) if unknown else 'none given'}; "
                     f"jax.export lowers for {', '.join(PLATFORMS)} (an NVIDIA GPU is cuda, an "
                     "AMD one rocm), comma-separated.")
  return platforms


# What metadata.json must hold for a reader to use the program.
_METADATA_KEYS = ("model", "task", "class_names", "input", "preprocessing")


def load(directory: str):
  """(the deserialized program, the metadata) of the artifact in `directory`, checked."""
  serialized, metadata = read(directory)
  missing = [k for k in _METADATA_KEYS if k not in metadata] if isinstance(metadata, dict) \
      else list(_METADATA_KEYS)
  if missing:
    raise InputError(f"{os.path.join(directory, METADATA_FILE)} lacks {', '.join(missing)}; it "
                     "was not written by python -m jaxlearn.export, or is damaged. Export again.")
  try:
    program = jax.export.deserialize(serialized)
  except Exception as e:  # pylint: disable=broad-except  # flatbuffers raises several kinds.
    raise InputError(f"{os.path.join(directory, MODEL_FILE)} cannot be read as a jax.export "
                     f"program ({type(e).__name__}); it is truncated or damaged. Export again."
                     ) from e
  return program, metadata


def read(directory: str) -> tuple[bytearray, dict]:
  """(the serialized program, the metadata) of the artifact in `directory`."""
  paths = [os.path.join(directory, f) for f in (MODEL_FILE, METADATA_FILE)]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise InputError(f"{', '.join(missing)} not found; --export_dir takes the --out directory "
                     "of python -m jaxlearn.export.")
  try:
    with open(paths[1], encoding="utf-8") as f:
      metadata = json.load(f)
  except ValueError as e:
    raise InputError(f"{paths[1]} is not valid JSON ({e}); export again.") from e
  with open(paths[0], "rb") as f:
    return bytearray(f.read()), metadata
