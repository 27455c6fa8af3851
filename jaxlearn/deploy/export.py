"""Export a run's best model as one file that runs without jaxlearn or Flax.

`export_run(workdir, out_dir)` lowers the run's inference function (normalisation
inside) with a symbolic batch size and writes it in the artifact format of
`jaxlearn.deploy.artifact`; the command is `python -m jaxlearn.export`.
"""

import jax

from jaxlearn.deploy import artifact
from jaxlearn.runs import finished, inference


def export_run(workdir: str, out_dir: str, platforms: tuple[str, ...] = ("cpu",)) -> dict:
  """Writes DIR/model.jax and DIR/metadata.json for the run in `workdir`; returns the metadata.

  >>> import tempfile
  >>> from configs import linreg  # configs/linreg.py: y = x . (2, -3.4) + 4.2 + noise
  >>> from jaxlearn import train_and_evaluate
  >>> workdir = tempfile.mkdtemp()
  >>> _ = train_and_evaluate(linreg.get_config(), workdir)
  >>> import os, jax, numpy as np
  >>> out = os.path.join(workdir, "export")
  >>> export_run(workdir, out)["input"]
  {'kind': 'features', 'shape': ['batch', 2], 'dtype': 'float32'}
  >>> program = jax.export.deserialize(open(os.path.join(out, "model.jax"), "rb").read())
  >>> round(float(program.call(np.zeros((1, 2), np.float32))[0]), 1)
  4.2
  """
  platforms = artifact.check_platforms(platforms)
  artifact.check_new(out_dir)
  run = finished.load_run(workdir)
  fn, params = inference.make_inference_fn(run), run.state.params
  batch = jax.export.symbolic_shape("batch")
  example = jax.ShapeDtypeStruct((*batch, *run.spec.shape), run.spec.dtype)
  exported = jax.export.export(jax.jit(lambda x: fn(params, x)), platforms=platforms)(example)
  metadata = artifact.metadata_for(run, exported, platforms)
  artifact.write(out_dir, exported, metadata)
  return metadata
