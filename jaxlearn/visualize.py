"""Pictures of a trained image model: `python -m jaxlearn.visualize --workdir=W`.

Writes into W/visualize/: filters.png (the first convolution's kernels),
feature_maps.png (each convolution's maps for a few test images) and
saliency.png (which pixels each prediction depends on — integrated gradients
or gradient × input, and Grad-CAM for a CNN — for correctly classified and
mistaken test images side by side), and the same pictures into W/tensorboard
(`tensorboard --logdir W`, tab "Images"). Needs matplotlib (the `plot` extra).
See `jaxlearn.evaluation.visualize`.
"""

import os

from absl import flags

from jaxlearn import cli


def main(argv):
  if len(argv) > 1:
    raise _error(f"Unexpected arguments {argv[1:]}; this command takes only flags.")
  # pylint: disable=import-outside-toplevel
  from jaxlearn.evaluation import visualize
  values = flags.FLAGS
  written = visualize.visualize_run(values.workdir, count=values.num_images,
                                    method=values.method, split=values.split,
                                    data_dir=values.data_dir)
  print("Wrote " + ", ".join(written) + "; the same in "
        f"{os.path.join(os.path.abspath(values.workdir), 'tensorboard')} (tab Images).")


def _error(message: str):
  from jaxlearn.errors import InputError  # pylint: disable=import-outside-toplevel
  return InputError(message)


if __name__ == "__main__":
  cli.define_workdir_flag()
  cli.define_split_flag("The split whose images are shown, cut as in training.")
  cli.define_data_dir_flag()
  flags.DEFINE_integer("num_images", 4, "Correct and mistaken images shown (each).",
                       lower_bound=1)
  flags.DEFINE_enum("method", "integrated_gradients", ["integrated_gradients",
                                                       "gradient_x_input"],
                    "How saliency is computed.")
  cli.run(main)
