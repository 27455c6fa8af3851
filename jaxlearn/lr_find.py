"""Learning-rate finder: `python -m jaxlearn.lr_find --config=configs/X.py --out=DIR`.

The range test (see `jaxlearn.training.lr_find`): a short run with the rate
rising exponentially from --min_lr to --max_lr over --steps batches. Writes
DIR/lr_find.csv (step, rate, loss, smoothed loss) and DIR/lr_find.png (the
`plot` extra), and prints the suggested rate, how it was chosen, and the flag
that trains with it. Nothing else is written: no workdir, no checkpoint.
In Python: `jaxlearn.find_learning_rate(config)`.
"""

import os

from absl import flags

from jaxlearn import cli

CSV, PNG = "lr_find.csv", "lr_find.png"


def main(argv):
  if len(argv) > 1:
    raise _error(f"Unexpected arguments {argv[1:]}; this command takes only flags.")
  from jaxlearn.training import lr_find  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  out = os.path.abspath(values.out)
  if os.path.exists(out) and not os.path.isdir(out):
    raise _error(f"--out={values.out} is a file; give a folder for {CSV} and {PNG}.")
  test = lr_find.find_learning_rate(values.config, min_lr=values.min_lr, max_lr=values.max_lr,
                                    steps=values.steps)
  os.makedirs(out, exist_ok=True)
  lr_find.write_csv(test, os.path.join(out, CSV))
  written = [CSV]
  try:
    lr_find.plot(test, os.path.join(out, PNG))
    written.append(PNG)
  except ImportError:
    print(f"(no {PNG}: matplotlib is not installed; pip install 'jaxlearn[plot]')")
  print(f"{len(test.rates)} steps, rates {test.rates[0]:.3g} to {test.rates[-1]:.3g}; "
        f"{test.stopped}.")
  print(f"Suggested learning rate: {test.suggestion:.3g} — {test.reason}.")
  print(f"Train with it: --config.optimizer.learning_rate={test.suggestion:.3g}")
  print(f"Wrote {', '.join(os.path.join(out, name) for name in written)}")


def _error(message: str):
  from jaxlearn.errors import ConfigError  # pylint: disable=import-outside-toplevel
  return ConfigError(message)


if __name__ == "__main__":
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  _CONFIG = config_flags.DEFINE_config_file("config", None, "The experiment's config "
                                            "(configs/*.py).", lock_config=True)
  flags.mark_flags_as_required(["config"])
  cli.define_out_flag(f"The folder for {CSV} and {PNG}.")
  flags.DEFINE_float("min_lr", 1e-7, "The first step's rate.")
  flags.DEFINE_float("max_lr", 10.0, "The last step's rate.")
  flags.DEFINE_integer("steps", 100, "Batches the rate rises over (fewer if the loss diverges).")
  cli.run(main, flags_parser=lambda argv: cli.parse_config_flags(argv, _CONFIG))
