"""Sweeps: `python -m jaxlearn.sweep --config=configs/X.py --workdir=DIR --grid KEY=V1,V2 ...`.

  --grid KEY=V1,V2,...          every combination of the grids is a trial (repeat the flag)
  --seeds 0,1,2                 each setting trained with these seeds (mean ± std in results.md)
  --random KEY=DIST(...) --trials N [--sampler tpe|random]
                                an Optuna search (pip install 'jaxlearn[sweep]'); DIST is
                                loguniform(a,b), uniform(a,b), int(a,b) or choice(a,b,...)
  --parallel K                  trials that cannot share a program: K processes at a time
  --config.KEY=V                overrides the base config, as for jaxlearn.main
  --study=NAME [--smoke]        a study of experiments/studies/NAME.py instead of --config
                                and --grid (--smoke: a few hundred examples, one epoch)

Every trial is a normal run in DIR/<trial>/ (evaluate, predict and export work
on it). Trials that differ only in the seed, learning rate, weight decay, dropout
rate or the loss's settings train together as one vectorised program. Writes
DIR/results.csv, results.md, summary.png and curves.png. Rerunning the same
command skips finished trials and resumes the rest; a different grid on the
same DIR is refused. In Python:
`jaxlearn.sweep.run(config, {"optimizer.learning_rate": [1e-3, 1e-2]}, workdir=DIR)`.
"""

import os
import sys

from absl import flags, logging

from jaxlearn import cli
from jaxlearn.errors import EXIT_INTERRUPTED


def run(config, grid: dict | None = None, *, workdir: str, seeds: list[int] | None = None,
        random: dict | None = None, trials: int = 0, sampler: str = "tpe", parallel: int = 1,
        vectorise: bool = True, max_group: int = 16) -> list[dict]:
  """Runs the sweep of `grid` ({key: [values]}) x `seeds`, or an Optuna search of `random`
  ({key: "loguniform(1e-4,1e-1)"}) for `trials` trials; returns one row per trial."""
  # pylint: disable=import-outside-toplevel
  from jaxlearn.errors import ConfigError
  from jaxlearn.sweeps import runner, search, spec
  if random:
    if grid or seeds:
      raise ConfigError("Give either --grid/--seeds (every combination) or --random (a "
                        "search), not both; a search over a few values uses choice(a,b,...).")
    space = dict(spec.parse_random(f"{k}={v}", config) if isinstance(v, str) else (k, v)
                 for k, v in random.items())
    return search.run(config, workdir, space, trials, sampler)
  if trials:
    raise ConfigError(f"--trials={trials} counts the trials of a --random search; a --grid "
                      "sweep trains every combination.")
  return runner.run(config, workdir, grid, seeds, parallel=parallel, vectorise=vectorise,
                    max_group=max_group)


def run_study(name: str, *, workdir: str, smoke: bool = False, parallel: int = 1) -> list[dict]:
  """Runs the study `name` (experiments/studies/NAME.py, see `jaxlearn.sweeps.study`)."""
  from jaxlearn.sweeps import runner, study  # pylint: disable=import-outside-toplevel
  definition = study.load(name)
  trials = study.trials(definition, smoke)
  title = f"# Study: {definition.question}" + (" (--smoke)" if smoke else "")
  return runner.run(trials[0].config, workdir, parallel=parallel,
                    vectorise=definition.vectorise, record=study.record(definition, name, smoke),
                    trials=trials, title=title, also=definition.also)


def _grid(specs: list[str], config) -> dict:
  from jaxlearn.sweeps import spec  # pylint: disable=import-outside-toplevel
  grid = {}
  for text in specs:
    key, values = spec.parse_grid(text, config)
    if key in grid:
      raise cli_error(f"--grid {key} is given twice; put all its values in one flag.")
    grid[key] = values
  return grid


def cli_error(message: str):
  from jaxlearn.errors import ConfigError  # pylint: disable=import-outside-toplevel
  return ConfigError(message)


def _seeds(text: str) -> list[int]:
  try:
    seeds = [int(s) for s in text.split(",") if s.strip()]
  except ValueError:
    raise cli_error(f"--seeds={text!r}: give whole numbers, e.g. --seeds 0,1,2.") from None
  if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
    raise cli_error(f"--seeds={text!r}: give distinct seeds of 0 or more.")
  return seeds


def main(argv):
  if len(argv) > 1:
    raise cli_error(f"Unexpected arguments {argv[1:]}; write each as --grid KEY=V1,V2.")
  from jaxlearn.errors import TrainingInterrupted  # pylint: disable=import-outside-toplevel
  from jaxlearn.sweeps import results, spec  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  config = values.config
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().python_handler.addFilter(cli.only_jaxlearn_info)
  cli.log_plainly()
  failures_expected = False
  try:
    if values.study:
      if config is not None or values.grid or values.random or values.seeds:
        raise cli_error(f"--study={values.study} defines the config, settings and seeds; give "
                        "it without --config, --grid, --random or --seeds (edit or copy the "
                        "study file to change them).")
      from jaxlearn.sweeps import study  # pylint: disable=import-outside-toplevel
      failures_expected = study.load(values.study).failures_expected
      rows = run_study(values.study, workdir=values.workdir, smoke=values.smoke,
                       parallel=values.parallel)
    else:
      if config is None:
        raise cli_error("Give --config=configs/X.py (the base config of the sweep), or "
                        "--study=NAME.")
      if values.smoke:
        raise cli_error("--smoke shrinks a --study; for a quick --grid sweep override the "
                        "config, e.g. --config.num_epochs=1.")
      random = dict(spec.parse_random(text, config) for text in values.random)
      rows = run(config, _grid(values.grid, config), workdir=values.workdir,
                 seeds=_seeds(values.seeds) if values.seeds else None, random=random,
                 trials=values.trials, sampler=values.sampler, parallel=values.parallel,
                 vectorise=values.vectorise, max_group=values.max_group)
  except TrainingInterrupted as e:
    print(f"\njaxlearn: {e}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
  workdir = os.path.abspath(values.workdir)
  with open(os.path.join(workdir, results.RESULTS_MD), encoding="utf-8") as f:
    print(f.read())
  print(f"{len(rows)} trials in {workdir}: " + ", ".join(
      name for name in (results.RESULTS_CSV, results.RESULTS_MD, results.SUMMARY_PNG,
                        results.CURVES_PNG) if os.path.exists(os.path.join(workdir, name))))
  failed = [r["trial"] for r in rows if str(r.get("status", "")).startswith("failed")]
  if failed and failures_expected:
    print(f"{len(failed)} of {len(rows)} trials diverged or turned non-finite, as this study "
          f"shows happens ({', '.join(failed)}).")
  elif failed:
    cli.fail(f"{len(failed)} of {len(rows)} trials failed ({', '.join(failed)}); each one's "
             "error is in results.md and failures.json, its checkpoints are kept.")


if __name__ == "__main__":
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  _CONFIG = config_flags.DEFINE_config_file("config", None, "The base config (configs/*.py).",
                                            lock_config=True)
  flags.DEFINE_string("workdir", None, "The sweep's folder; each trial is DIR/<trial>/.")
  flags.mark_flags_as_required(["workdir"])
  flags.DEFINE_string("study", "", "A study of experiments/studies/ (its name, or a file) "
                      "instead of --config and --grid.")
  flags.DEFINE_bool("smoke", False, "Run the --study shrunk to seconds (one epoch, a few "
                    "hundred examples, one seed).")
  flags.DEFINE_multi_string("grid", [], "KEY=V1,V2,...: a config field and its values.")
  flags.DEFINE_string("seeds", "", "Seeds each setting is trained with, e.g. 0,1,2.")
  flags.DEFINE_multi_string("random", [], "KEY=DIST(ARGS): a field an Optuna search samples.")
  flags.DEFINE_integer("trials", 0, "Trials of a --random search.", lower_bound=0)
  flags.DEFINE_enum("sampler", "tpe", ["tpe", "random"], "The search's sampler: Bayesian "
                    "(TPE) or random.")
  flags.DEFINE_integer("parallel", 1, "Separate trials run this many at a time.", lower_bound=1)
  flags.DEFINE_bool("vectorise", True, "Train trials that differ only in seed, learning "
                    "rate, weight decay, dropout rate or loss settings as one program.")
  flags.DEFINE_integer("max_group", 16, "Most trials in one vectorised program.", lower_bound=1)
  cli.run(main, flags_parser=lambda argv: cli.parse_config_flags(argv, _CONFIG))
