"""Export a run's best model: `python -m jaxlearn.export --workdir=W --out=DIR`.

Writes DIR/model.jax (a `jax.export` program with the weights inside, run with
only JAX and NumPy) and DIR/metadata.json; see `jaxlearn.deploy.artifact`.
"""

import os

from absl import flags

from jaxlearn import cli


def main(argv):
  del argv
  from jaxlearn.deploy import artifact, export  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  platforms = tuple(p.strip() for p in values.platforms.split(",") if p.strip())
  metadata = export.export_run(values.workdir, values.out, platforms)
  size = os.path.getsize(os.path.join(values.out, artifact.MODEL_FILE))
  print(f"Exported {metadata['model']} ({metadata['task']}) from {values.workdir} to "
        f"{values.out}/{artifact.MODEL_FILE} ({size / 1e6:.2f} MB) and "
        f"{artifact.METADATA_FILE}; input {metadata['input']['shape']} "
        f"{metadata['input']['dtype']}, platforms {', '.join(platforms)}.")


if __name__ == "__main__":
  cli.define_workdir_flag()
  cli.define_out_flag("Directory for model.jax and metadata.json.")
  flags.DEFINE_string("platforms", "cpu", "Comma-separated platforms the program is lowered for "
                      "(cpu, cuda, rocm, tpu); it runs only on these.")
  cli.run(main)
