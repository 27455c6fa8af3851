"""Export a run's best model as one file that runs without jaxlearn or Flax.

  python -m jaxlearn.export --workdir=W --out=DIR

writes DIR/model.jax, a serialized `jax.export` program (StableHLO) with the
weights inside and a symbolic batch dimension, and DIR/metadata.json (input
shape and dtype, class names, the vocabulary or table encoder that builds
inputs, the source run and its test metrics). To run it, only JAX and NumPy:

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

from jaxlearn import inference

MODEL_FILE = "model.jax"
METADATA_FILE = "metadata.json"


def export_run(workdir: str, out_dir: str, platforms: tuple[str, ...] = ("cpu",)) -> dict:
  """Writes DIR/model.jax and DIR/metadata.json for the run in `workdir`; returns the metadata."""
  run = inference.load_run(workdir)
  fn, params = inference.make_inference_fn(run), run.state.params
  batch = jax.export.symbolic_shape("batch")
  example = jax.ShapeDtypeStruct((*batch, *run.spec.shape), run.spec.dtype)
  exported = jax.export.export(jax.jit(lambda x: fn(params, x)), platforms=platforms)(example)
  metadata = metadata_for(run, exported, platforms)
  write_artifact(out_dir, exported, metadata)
  return metadata


def write_artifact(out_dir: str, exported, metadata: dict) -> None:
  """DIR/model.jax and DIR/metadata.json, each written whole and renamed into place."""
  os.makedirs(out_dir, exist_ok=True)
  _write_atomically(os.path.join(out_dir, MODEL_FILE), exported.serialize())
  _write_atomically(os.path.join(out_dir, METADATA_FILE),
                    json.dumps(metadata, indent=2).encode("utf-8"))


def metadata_for(run: inference.Run, exported, platforms) -> dict:
  """metadata.json for a program exported from `run` (see the module docstring)."""
  preprocessing = run.preprocessing
  summary_path = os.path.join(run.workdir, "summary.json")
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


def _describe_output(run: inference.Run) -> dict:
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
  directory = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile(dir=directory, delete=False) as f:
    f.write(data)
  os.replace(f.name, path)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  platforms = tuple(p.strip() for p in values.platforms.split(",") if p.strip())
  metadata = export_run(values.workdir, values.out, platforms)
  size = os.path.getsize(os.path.join(values.out, MODEL_FILE))
  print(f"Exported {metadata['model']} ({metadata['task']}) from {values.workdir} to "
        f"{values.out}/{MODEL_FILE} ({size / 1e6:.2f} MB) and {METADATA_FILE}; input "
        f"{metadata['input']['shape']} {metadata['input']['dtype']}, platforms "
        f"{', '.join(platforms)}.")


if __name__ == "__main__":
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  from jaxlearn import cli  # pylint: disable=g-import-not-at-top
  _flags.DEFINE_string("workdir", None, "A finished training run's workdir.")
  _flags.DEFINE_string("out", None, "Directory for model.jax and metadata.json.")
  _flags.DEFINE_string("platforms", "cpu", "Comma-separated platforms the program is lowered for "
                       "(cpu, cuda, rocm, tpu); it runs only on these.")
  _flags.mark_flags_as_required(["workdir", "out"])
  cli.run(main)
