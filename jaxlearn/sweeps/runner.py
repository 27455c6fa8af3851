"""A sweep: trials of one config, each a normal run in DIR/<trial>/, grouped into vectorised
programs where they differ only in numbers the step takes as arrays (seed, learning rate,
weight decay, dropout rate, the loss's settings), and a table, plots and a record.

`run(config, workdir, grid=..., seeds=...)` is `python -m jaxlearn.sweep`. A
rerun on the same DIR skips finished trials and resumes interrupted ones; a
changed grid is refused, naming the difference. DIR/sweep.json records what
was asked, DIR/failures.json the trials that failed (a non-finite loss, a
divergence), so a rerun reports rather than retrains them.
"""

import concurrent.futures
import gc
import json
import multiprocessing
import os
import time

import jax
from absl import logging

from jaxlearn.errors import ConfigError, DivergedError, NonFiniteLossError, WorkdirError
from jaxlearn.runs import workdir as workdir_lib
from jaxlearn.sweeps import results, spec, vectorised
from jaxlearn.training import train

SWEEP_JSON, FAILURES_JSON = "sweep.json", "failures.json"
# Errors that end one trial, not the sweep: its run is kept and reported as failed.
TRIAL_FAILURES = (NonFiniteLossError, DivergedError)


def run(config, workdir: str, grid: dict | None = None, seeds: list[int] | None = None, *,
        parallel: int = 1, vectorise: bool = True, max_group: int = 16,
        record: dict | None = None, trials: list | None = None,
        title: str = "", also: tuple = ()) -> list[dict]:
  """Trains every trial of `grid` x `seeds` (or the given `trials`); returns the result rows.

  Args:
    config: the base config (a `configs/*.py` get_config(), overrides applied).
    workdir: the sweep's folder; each trial is a normal run in workdir/<trial name>/.
    grid: {dotted config key: [values]}; every combination is a trial.
    seeds: the seeds each setting is trained with (mean ± std in results.md).
    parallel: trials that cannot share a program, run this many at a time (processes).
    vectorise: group trials that differ only in `vectorised.VECTORISED_KEYS` (default on).
    max_group: the most trials in one vectorised program (memory grows with it).
    record, trials: what DIR/sweep.json records, and the trials, when not `grid` x `seeds`
      (a study's, see `jaxlearn.sweeps.study`).
    title: the first lines of results.md; also: more test metrics it shows.

  Example:
    rows = run(config, "/tmp/sweep", {"optimizer.learning_rate": [1e-3, 3e-3]}, seeds=[0, 1])
  """
  workdir = os.path.abspath(os.path.expanduser(str(workdir)))
  config = with_wandb_group(config, workdir)
  if trials is None:
    grid = {k: list(v) for k, v in (grid or {}).items()}
    for key, values in grid.items():
      kind = spec.field_type(config, key, f"grid {key}")
      if not values:
        raise ConfigError(f"grid {key}: no values; give at least one.")
      grid[key] = [v if isinstance(v, kind) or kind is float and isinstance(v, int)
                   else spec.convert(str(v), kind, key, f"grid {key}") for v in values]
    trials = spec.grid_trials(config, grid, seeds)
    record = {"grid": {k: [spec.describe(v) for v in vs] for k, vs in grid.items()},
              "seeds": list(seeds or [])}
  claim_sweep(workdir, record or {}, config)
  varied = list(dict.fromkeys(k for t in trials for k in t.values))
  plan = plan_groups(trials, vectorise, max_group)
  failures = _read_json(os.path.join(workdir, FAILURES_JSON), {})
  started = time.time()
  for group in plan:
    pending = [t for t in group if not _finished(workdir, t) and t.name not in failures]
    for trial in group:
      if trial.name in failures:
        logging.info("Trial %s failed in an earlier run of this sweep (%s); delete %s to train "
                     "it again.", trial.name, failures[trial.name].splitlines()[0][:120],
                     os.path.join(workdir, trial.name))
    if not pending:
      continue
    if len(pending) > 1 and len(group) > 1:
      failures.update(_train_vectorised(pending, workdir))
    else:
      failures.update(_train_each(pending, workdir, parallel))
    _write_failures(workdir, failures)
  rows = write_results(workdir, trials, varied, config.monitor, failures, title, also)
  logging.info("Sweep of %d trials done in %.1f s: %s", len(trials), time.time() - started,
               os.path.join(workdir, results.RESULTS_MD))
  return rows


def with_wandb_group(config, workdir: str):
  """`config` whose W&B runs (if any) are grouped under the sweep's folder name."""
  if not config.logging.wandb_project or config.logging.wandb_group:
    return config
  return spec.with_values(config, {"logging.wandb_group": os.path.basename(workdir)})


def claim_sweep(workdir: str, record: dict, config) -> None:
  """Writes DIR/sweep.json, or checks that an existing one asked for the same trials."""
  path = os.path.join(workdir, SWEEP_JSON)
  wanted = {**record, "config": train.run_record(config)}
  saved = _read_json(path, None)
  if saved is not None:
    differing = [k for k in sorted(set(saved) | set(record)) if k != "config"
                 and saved.get(k) != wanted.get(k)]
    if differing:
      shown = "; ".join(f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in differing)
      raise WorkdirError(f"{workdir} holds a sweep of other trials ({shown}). Use a new "
                         "--workdir for this sweep, or rerun with the same flags to resume "
                         f"it ({path} records them). Nothing was changed.")
    return
  if os.path.isdir(workdir) and os.listdir(workdir):
    raise WorkdirError(f"{workdir} is not empty and holds no sweep ({SWEEP_JSON}); pass a new "
                       "or empty --workdir for the sweep.")
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.write_json(path, wanted)


def plan_groups(trials: list, vectorise: bool, max_group: int) -> list[list]:
  """Trials in the order they are trained: lists that share one program, or lone trials.

  Trials whose configs are equal but for VECTORISED_KEYS, and whose config
  allows it (see `vectorised.why_not_vectorised`), share a group of at most
  `max_group`; the decision is logged.
  """
  groups = {}
  for trial in trials:
    record = train.run_record(trial.config)
    for key in vectorised.VECTORISED_KEYS:
      node = record
      *parents, last = key.split(".")
      for part in parents:
        node = node[part]
      node.pop(last, None)
    groups.setdefault(json.dumps(record, sort_keys=True, default=str), []).append(trial)
  plan = []
  for members in groups.values():
    reason = why_not(members) if vectorise else "--novectorise"
    if len(members) == 1 or reason:
      if len(members) > 1:
        logging.info("Trials %s run one by one: %s.", ", ".join(t.name for t in members), reason)
      plan.extend([m] for m in members)
      continue
    for start in range(0, len(members), max_group):
      chunk = members[start:start + max_group]
      logging.info("Trials %s train together as one vectorised program.",
                   ", ".join(t.name for t in chunk))
      plan.append(chunk)
  return plan


def why_not(members: list) -> str:
  """'' when `members` can share a vectorised program, else why not."""
  reason = vectorised.why_not_vectorised(members[0].config)
  if reason:
    return reason
  rates = {t.config.optimizer.learning_rate for t in members}
  if len(rates) > 1 and not vectorised.schedule_scales_with_rate(members[0].config):
    return (f"config.schedule.name={members[0].config.schedule.name!r} does not scale with "
            "the base learning rate")
  return ""


def _finished(workdir: str, trial) -> bool:
  """Whether the trial's run is done: it has a summary, and did not stop only because it ran
  out of epochs that the config now raises (then it trains on, as a single run would)."""
  summary = _read_json(workdir_lib.RunDir(os.path.join(workdir, trial.name)).summary, None)
  if summary is None:
    return False
  ran_out = summary.get("stop_reason", "").startswith("completed")
  return not ran_out or summary.get("epochs_run", 0) >= trial.config.num_epochs


def _train_vectorised(trials: list, workdir: str) -> dict[str, str]:
  dirs = [os.path.join(workdir, t.name) for t in trials]
  try:
    outcomes = vectorised.train_group([t.config for t in trials], dirs)
  except vectorised.CannotGroup as e:  # One by one after all.
    logging.info("Trials %s run one by one: %s.", ", ".join(t.name for t in trials), e)
    return _train_each(trials, workdir, 1)
  finally:
    _release_memory()
  return {t.name: str(o) for t, o in zip(trials, outcomes) if isinstance(o, Exception)}


def _train_each(trials: list, workdir: str, parallel: int) -> dict[str, str]:
  """Trials as separate runs, `parallel` at a time; {name: error} of those that failed."""
  failures = {}
  if parallel <= 1 or len(trials) == 1:
    for trial in trials:
      error = train_one(trial.config, os.path.join(workdir, trial.name))
      _release_memory()
      if error:
        failures[trial.name] = error
    return failures
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(parallel, mp_context=context) as pool:
    futures = {pool.submit(train_one, t.config, os.path.join(workdir, t.name)): t
               for t in trials}
    for future in concurrent.futures.as_completed(futures):
      error = future.result()
      if error:
        failures[futures[future].name] = error
  return failures


def train_one(config, workdir: str) -> str:
  """One trial as a normal run; '' when it finished, else the error that ended it."""
  try:
    train.train_and_evaluate(config, workdir)
  except TRIAL_FAILURES as e:
    logging.warning("Trial %s failed: %s", workdir, e)
    return str(e)
  return ""


def _release_memory() -> None:
  """Drops the compiled programs and arrays of finished trials, so a long sweep in one process
  stays within the memory of its largest trial."""
  jax.clear_caches()
  gc.collect()


def write_results(workdir: str, trials: list, varied: list[str], monitor: str,
                  failures: dict[str, str], title: str = "", also: tuple = ()) -> list[dict]:
  rows = [results.trial_row(t.name, t.values, os.path.join(workdir, t.name), monitor,
                            failures.get(t.name, "")) for t in trials]
  results.write_tables(workdir, rows, varied, monitor, title, also)
  results.write_figures(workdir, rows, varied, monitor,
                        {t.name: os.path.join(workdir, t.name) for t in trials})
  return rows


def _read_json(path: str, default):
  if not os.path.exists(path):
    return default
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except ValueError as e:
    raise WorkdirError(f"{path} cannot be read ({e}); restore it, or use a new --workdir."
                       ) from e


def _write_failures(workdir: str, failures: dict[str, str]) -> None:
  if failures:
    workdir_lib.write_json(os.path.join(workdir, FAILURES_JSON), failures)

