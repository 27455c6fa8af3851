"""Random and Bayesian (TPE) search through Optuna: `--random KEY=DIST(...) --trials N`.

Each Optuna trial is a normal run in DIR/trial-NNN/. Its pruner reads the
loop's validation metric after every epoch (`train_and_evaluate(after_epoch=)`),
so a trial far behind the others at the same epoch stops there. The study is
kept in DIR/study.db (SQLite): a rerun of an interrupted search resumes the trial
that was running (from its latest checkpoint) and asks for the rest.
"""

import os

from absl import logging

from jaxlearn.errors import ConfigError
from jaxlearn.sweeps import results, runner, spec
from jaxlearn.training import train

SAMPLERS = ("random", "tpe")
STUDY_DB, STUDY_NAME = "study.db", "jaxlearn"


def _optuna():
  try:
    import optuna  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ConfigError("--random needs Optuna: pip install 'jaxlearn[sweep]' (or use --grid, "
                      "which needs nothing more).") from e
  return optuna


def run(config, workdir: str, space: dict, num_trials: int, sampler: str = "tpe",
        record: dict | None = None) -> list[dict]:
  """Searches `space` ({dotted key: spec.Distribution}) for `num_trials` trials; result rows."""
  if not space:
    raise ConfigError("Nothing to search: give --random KEY=DIST(...), e.g. "
                      "--random optimizer.learning_rate=loguniform(1e-4,1e-1).")
  if num_trials < 1:
    raise ConfigError(f"--trials={num_trials}: a search needs 1 or more trials.")
  if sampler not in SAMPLERS:
    raise ConfigError(f"--sampler={sampler!r}; choose one of {SAMPLERS}.")
  optuna = _optuna()
  workdir = os.path.abspath(os.path.expanduser(str(workdir)))
  config = runner.with_wandb_group(config, workdir)
  for key, distribution in space.items():  # Every key and its values checked before trial 0.
    spec.make_trial(config, {key: _example(distribution)})
  runner.claim_sweep(workdir, record or {
      "random": {k: spec.describe(d) for k, d in space.items()}, "trials": num_trials,
      "sampler": sampler}, config)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
  study = optuna.create_study(
      storage=f"sqlite:///{os.path.join(workdir, STUDY_DB)}", study_name=STUDY_NAME,
      load_if_exists=True, direction="maximize" if config.monitor_mode == "max" else "minimize",
      sampler=samplers[sampler](seed=config.seed),
      pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
  running = optuna.trial.TrialState.RUNNING
  for frozen in study.get_trials(deepcopy=False, states=(running,)):  # Interrupted before.
    logging.info("Resuming trial %d of the search.", frozen.number)
    _run_trial(optuna, study, optuna.trial.Trial(study, frozen._trial_id),  # pylint: disable=protected-access
               config, workdir, frozen.params)
  while len(_ended(optuna, study)) < num_trials:
    trial = study.ask()
    _run_trial(optuna, study, trial, config, workdir,
               {key: _suggest(trial, key, d) for key, d in space.items()})
  trials = sorted(_ended(optuna, study), key=lambda t: t.number)[:num_trials]
  rows = []
  for frozen in trials:
    name = _name(frozen.number)
    failure = frozen.user_attrs.get("failure", "")
    rows.append(results.trial_row(name, dict(frozen.params), os.path.join(workdir, name),
                                  config.monitor, failure))
  results.write_tables(workdir, rows, list(space), config.monitor)
  results.write_figures(workdir, rows, list(space), config.monitor,
                        {r["trial"]: os.path.join(workdir, r["trial"]) for r in rows})
  return rows


def _ended(optuna, study) -> list:
  states = optuna.trial.TrialState
  return study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL))


def _name(number: int) -> str:
  return f"trial-{number:03d}"


def _example(distribution: spec.Distribution):
  return distribution.args[0]


def _suggest(trial, key: str, distribution: spec.Distribution):
  kind, args = distribution
  if kind == "loguniform":
    return trial.suggest_float(key, *args, log=True)
  if kind == "uniform":
    return trial.suggest_float(key, *args)
  if kind == "int":
    return trial.suggest_int(key, *args)
  return trial.suggest_categorical(key, list(args))


def _run_trial(optuna, study, trial, config, workdir: str, values: dict) -> None:
  """Trains the trial's run, telling the study its best validation value, or that it was
  pruned or failed."""
  trial_config = spec.make_trial(config, values).config
  monitor = config.monitor

  def after_epoch(epoch: int, val_metrics: dict) -> str:
    value = val_metrics[monitor]
    trial.report(value, epoch + 1)
    if trial.should_prune():
      return (f"pruned by the search at epoch {epoch + 1} (val {monitor} {value:.4g}, behind "
              "the median of the earlier trials there)")
    return ""

  directory = os.path.join(workdir, _name(trial.number))
  logging.info("Search trial %d: %s", trial.number, values)
  try:
    summary = train.train_and_evaluate(trial_config, directory, after_epoch=after_epoch)
  except runner.TRIAL_FAILURES as e:
    trial.set_user_attr("failure", str(e))
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return
  if summary["stop_reason"].startswith("pruned"):
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
  else:
    study.tell(trial, summary[f"best_val_{monitor}"])
