"""Sweeps (python -m jaxlearn.sweep): vectorised groups equal separate runs, trials are normal
runs, reruns resume, bad specs are refused before any trial starts."""

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from jaxlearn import sweep
from jaxlearn.errors import ConfigError, NonFiniteLossError, WorkdirError
from jaxlearn.runs import checkpoint, diagnosis
from jaxlearn.sweeps import runner, spec, vectorised
from jaxlearn.training import train
from tests.conftest import PROJECT_ROOT

# One program for all trials rounds differently from one per trial (the weights agree to
# ~1e-7 after an epoch). The equality tests train with SGD and momentum: Adam divides by the
# root of near-zero gradients' squares, which can magnify such rounding into weight changes
# of the learning rate's size (seen: 2e-3 in one of four LeNet trials after 36 steps).
RTOL, ATOL = 1e-4, 1e-5
COMPARED = ("test_accuracy", "test_loss", "best_val_accuracy", "best_val_loss", "best_epoch",
            "epochs_run", "stop_reason")


def _trial_configs(config, rates=(0.001, 0.004), seeds=(0, 1)):
  configs = []
  for rate in rates:
    for seed in seeds:
      trial = copy.deepcopy(config)
      trial.optimizer.learning_rate, trial.seed = rate, seed
      configs.append(trial)
  return configs


def _arrays(workdir: str) -> dict:
  return checkpoint.load_best_arrays(workdir)


def _assert_same_summary(got: dict, expected: dict) -> None:
  for key in COMPARED:
    if isinstance(expected[key], float):
      assert got[key] == pytest.approx(expected[key], rel=RTOL, abs=ATOL), key
    else:
      assert got[key] == expected[key], key
  assert len(got["history"]) == len(expected["history"])
  for mine, theirs in zip(got["history"], expected["history"]):
    for key, value in theirs.items():
      if key != "seconds":
        assert mine[key] == pytest.approx(value, rel=RTOL, abs=ATOL), key


@pytest.mark.parametrize("trial_axis", [
    "map",  # How a CPU runs a group (the trials looped inside one program).
    pytest.param("vmap", marks=pytest.mark.slow),  # How a GPU or TPU runs it.
])
def test_a_vectorised_group_of_four_equals_four_separate_runs(small_config, tmp_path,
                                                              trial_axis):
  small_config.optimizer.name, small_config.optimizer.momentum = "sgd", 0.9
  configs = _trial_configs(small_config, rates=(0.02, 0.05))
  group_dirs = [str(tmp_path / "group" / f"t{i}") for i in range(4)]
  summaries = vectorised.train_group(configs, group_dirs, trial_axis)
  for i, config in enumerate(configs):
    alone = str(tmp_path / "alone" / f"t{i}")
    expected = train.train_and_evaluate(config, alone)
    _assert_same_summary(summaries[i], expected)
    with open(os.path.join(group_dirs[i], "summary.json"), encoding="utf-8") as f:
      _assert_same_summary(json.load(f), expected)
    with open(os.path.join(group_dirs[i], "model_summary.txt"), encoding="utf-8") as f, \
         open(os.path.join(alone, "model_summary.txt"), encoding="utf-8") as g:
      assert f.read() == g.read()
    mine, theirs = _arrays(group_dirs[i]), _arrays(alone)
    assert jax.tree.structure(mine) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs)):
      np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
  # The trials really differ (the seeds and rates reach the step), so the comparison means
  # something.
  assert len({round(s["test_loss"], 6) for s in summaries}) == 4


def test_a_diverging_trial_is_masked_and_the_others_go_on(small_config, tmp_path):
  small_config.optimizer.name, small_config.schedule.name = "sgd", "constant"
  configs = _trial_configs(small_config, rates=(0.05, 1e9), seeds=(0,))
  with pytest.raises(NonFiniteLossError):  # What the diverging trial does alone.
    train.train_and_evaluate(configs[1], str(tmp_path / "nan_alone"))
  results = vectorised.train_group(configs, [str(tmp_path / "ok"), str(tmp_path / "nan")])
  assert isinstance(results[1], NonFiniteLossError)
  assert "became non-finite" in str(results[1])
  expected = train.train_and_evaluate(configs[0], str(tmp_path / "alone"))
  _assert_same_summary(results[0], expected)
  assert not os.path.exists(tmp_path / "nan" / "summary.json")


def _sweep(config, workdir, grid, seeds=None, **options):
  return sweep.run(config, grid, workdir=str(workdir), seeds=seeds, **options)


def test_sweep_rows_tables_figures_and_a_rerun_that_skips_finished_trials(small_config,
                                                                          tmp_path, caplog):
  workdir = tmp_path / "sweep"
  small_config.num_epochs = 1
  grid = {"optimizer.learning_rate": [0.001, 0.004], "batch_size": [32, 64]}
  rows = _sweep(small_config, workdir, grid, seeds=[0, 1])
  assert len(rows) == 8 and all(r["status"] == "finished" for r in rows)
  with open(workdir / "results.csv", encoding="utf-8") as f:
    table = list(csv.DictReader(f))
  assert [r["trial"] for r in table] == [r["trial"] for r in rows]
  for row in table:  # Each row is its trial's own summary.
    with open(workdir / row["trial"] / "summary.json", encoding="utf-8") as f:
      summary = json.load(f)
    assert float(row["test_accuracy"]) == pytest.approx(summary["test_accuracy"])
    assert summary["config"]["batch_size"] == int(row["batch_size"])
    best = next(h for h in summary["history"] if h["epoch"] == summary["best_epoch"])
    assert float(row["train_accuracy"]) == pytest.approx(best["train_accuracy"])
    assert row["diagnosis"] == (" ".join(
        f.problem for f in diagnosis.diagnose(diagnosis.read_records(workdir / row["trial"])))
        or "-")
  text = (workdir / "results.md").read_text()
  assert "## Over seeds" in text and "±" in text
  for name in ("summary.png", "curves.png"):
    assert (workdir / name).stat().st_size > 5000
  stamps = {r["trial"]: os.path.getmtime(workdir / r["trial"] / "summary.json") for r in rows}
  started = time.time()
  _sweep(small_config, workdir, grid, seeds=[0, 1])
  assert {r["trial"]: os.path.getmtime(workdir / r["trial"] / "summary.json")
          for r in rows} == stamps
  assert time.time() - started < 20
  changed = {**grid, "batch_size": [32, 128]}
  with pytest.raises(WorkdirError, match=r"holds a sweep of other trials \(grid: .*'batch_size'"
                                         r": \[32, 64\].* there, .*\[32, 128\].* now\)"):
    _sweep(small_config, workdir, changed, seeds=[0, 1])


def test_grouping_is_decided_by_what_the_trials_differ_in(small_config):
  trials = spec.grid_trials(small_config, {"optimizer.learning_rate": [0.001, 0.01],
                                           "model.dropout_rate" if "dropout_rate" in
                                           small_config.model else "batch_size": [32, 64]},
                            seeds=[0, 1])
  plan = runner.plan_groups(trials, vectorise=True, max_group=16)
  assert sorted(len(g) for g in plan) == [4, 4]  # One program per batch size: 2 rates x 2 seeds.
  assert [len(g) for g in runner.plan_groups(trials, vectorise=True, max_group=3)] == [3, 1,
                                                                                        3, 1]
  plateau = copy.deepcopy(small_config)
  plateau.schedule.name = "plateau"
  lone = runner.plan_groups(spec.grid_trials(plateau, {}, seeds=[0, 1]), True, 16)
  assert [len(g) for g in lone] == [1, 1]


def test_evaluate_and_export_work_on_a_vectorised_trial(small_config, tmp_path):
  from jaxlearn.deploy import export  # pylint: disable=import-outside-toplevel
  from jaxlearn.evaluation import evaluate  # pylint: disable=import-outside-toplevel
  rows = _sweep(small_config, tmp_path / "s", {"optimizer.learning_rate": [0.001, 0.004]})
  trial_dir = str(tmp_path / "s" / rows[1]["trial"])
  report = evaluate.evaluate_run(trial_dir, "test")
  assert report["accuracy"] == pytest.approx(rows[1]["test_accuracy"], abs=1e-6)
  export.export_run(trial_dir, str(tmp_path / "export"))
  assert (tmp_path / "export" / "model.jax").stat().st_size > 0


@pytest.mark.parametrize("grid, message", [
    ({"optimizer.lr": [0.1]}, (r"the config has no field 'optimizer.lr' \(did you mean "
                               r"optimizer.learning_rate or optimizer.lr_multipliers")),
    ({"optimizer": [1]}, r"config.optimizer is a group of fields, not one"),
    ({"progress_bar": [True, False]}, r"config.progress_bar does not change what is trained"),
    ({"batch_size": ["big"]}, r"'big' is not a int, the type of config.batch_size"),
    ({"batch_size": []}, r"no values"),
    ({"optimizer.learning_rate": [0.01, -1.0]},
     r"Trial learning_rate=-1: config.optimizer.learning_rate=-1.0 is not allowed"),
])
def test_bad_grids_are_refused_before_any_trial_starts(small_config, tmp_path, grid, message):
  with pytest.raises(ConfigError, match=message):
    _sweep(small_config, tmp_path / "s", grid)
  assert not (tmp_path / "s").exists()


def test_nothing_to_sweep_and_a_busy_folder_are_refused(small_config, tmp_path):
  with pytest.raises(ConfigError, match="Nothing to sweep"):
    _sweep(small_config, tmp_path / "s", {})
  (tmp_path / "busy").mkdir()
  (tmp_path / "busy" / "notes.txt").write_text("mine")
  with pytest.raises(WorkdirError, match="is not empty and holds no sweep"):
    _sweep(small_config, tmp_path / "busy", {"batch_size": [32]})
  assert os.listdir(tmp_path / "busy") == ["notes.txt"]


def test_grid_and_random_specs_parse_to_the_fields_types(small_config):
  assert spec.parse_grid("optimizer.learning_rate=1e-3, 0.01", small_config) == (
      "optimizer.learning_rate", [0.001, 0.01])
  assert spec.parse_grid("batch_size=32,64", small_config) == ("batch_size", [32, 64])
  assert spec.parse_grid("optimizer.momentum=0.9", small_config) == ("optimizer.momentum", [0.9])
  assert spec.parse_random("optimizer.learning_rate=loguniform(1e-4,1e-1)", small_config) == (
      "optimizer.learning_rate", spec.Distribution("loguniform", (1e-4, 1e-1)))
  with pytest.raises(ConfigError, match=r"needs low < high and low > 0"):
    spec.parse_random("optimizer.learning_rate=loguniform(0,1)", small_config)
  with pytest.raises(ConfigError, match=r"write KEY=DIST\(ARGS\)"):
    spec.parse_random("optimizer.learning_rate=gaussian(0,1)", small_config)
  assert spec.trial_name({"optimizer.learning_rate": 0.001, "seed": 2}) == (
      "learning_rate=0.001,seed=2")


@pytest.mark.slow
def test_trials_in_one_process_leave_no_arrays_behind(small_config, tmp_path):
  """A long sweep's memory stays that of one trial: no trial's arrays outlive it."""
  small_config.num_epochs = 1
  _sweep(small_config, tmp_path / "warm", {"batch_size": [32]})
  before = len(jax.live_arrays())
  _sweep(small_config, tmp_path / "s", {"batch_size": [16, 32, 64, 80]}, seeds=[0])
  assert len(jax.live_arrays()) <= before


def _cli(*args, **kwargs):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, "-m", "jaxlearn.sweep", *args], cwd=PROJECT_ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **kwargs)


@pytest.mark.slow
def test_cli_interrupted_group_resumes_to_the_same_result(fake_root, tmp_path):
  common = ["--config=configs/mnist_lenet.py", f"--config.data.dir={fake_root}",
            "--config.batch_size=64", "--config.eval_batch_size=80", "--config.num_epochs=3",
            "--config.progress_bar=False", "--config.compilation_cache_dir=",
            "--grid=optimizer.learning_rate=0.001,0.004"]
  whole = _cli(*common, f"--workdir={tmp_path / 'whole'}")
  out, err = whole.communicate(timeout=600)
  assert whole.returncode == 0, err
  assert "train together as one vectorised program" in err
  assert "| learning_rate=0.001 |" in out
  stopped = _cli(*common, f"--workdir={tmp_path / 'stopped'}")
  latest = tmp_path / "stopped" / "learning_rate=0.004" / "checkpoints" / "latest"
  deadline = time.time() + 300
  while not (latest.exists() and os.listdir(latest)) and time.time() < deadline:
    time.sleep(0.2)
  stopped.send_signal(signal.SIGINT)
  _, err = stopped.communicate(timeout=300)
  assert stopped.returncode == 130, err
  assert "Rerun the same command to resume" in err
  resumed = _cli(*common, f"--workdir={tmp_path / 'stopped'}")
  _, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err
  for name in ("learning_rate=0.001", "learning_rate=0.004"):
    with open(tmp_path / "whole" / name / "summary.json", encoding="utf-8") as f:
      expected = json.load(f)
    with open(tmp_path / "stopped" / name / "summary.json", encoding="utf-8") as f:
      _assert_same_summary(json.load(f), expected)


def test_cli_bad_grid_is_one_paragraph_and_exit_2(fake_root, tmp_path):
  process = _cli("--config=configs/mnist_lenet.py", f"--workdir={tmp_path / 's'}",
                 "--grid=optimizer.learnig_rate=0.1")
  _, err = process.communicate(timeout=120)
  assert process.returncode == 2
  assert err.strip().startswith("jaxlearn: error: --grid optimizer.learnig_rate=0.1: the config "
                                "has no field 'optimizer.learnig_rate' (did you mean "
                                "optimizer.learning_rate")
  assert "Traceback" not in err and not (tmp_path / "s").exists()


def test_an_optuna_search_prunes_a_hopeless_trial_and_a_rerun_adds_nothing(small_config,
                                                                           tmp_path):
  pytest.importorskip("optuna")
  small_config.num_epochs = 2
  small_config.optimizer.name, small_config.schedule.name = "adam", "constant"
  workdir = tmp_path / "search"
  space = {"optimizer.learning_rate": "choice(0.004,1e-9)"}
  rows = sweep.run(small_config, workdir=str(workdir), random=space, trials=5,
                   sampler="random")
  assert len(rows) == 5 and (workdir / "study.db").exists()
  assert {r["optimizer.learning_rate"] for r in rows} == {0.004, 1e-9}
  pruned = [r for r in rows if r["status"].startswith("pruned by the search at epoch")]
  assert pruned and all(r["optimizer.learning_rate"] == 1e-9 and r["epochs_run"] < 2
                        for r in pruned)
  good = [r for r in rows if r["optimizer.learning_rate"] == 0.004]
  assert all(r["status"] == "finished" and r["epochs_run"] == 2 for r in good)
  again = sweep.run(small_config, workdir=str(workdir), random=space, trials=5,
                    sampler="random")
  assert [r["trial"] for r in again] == [r["trial"] for r in rows]
  assert sorted(os.listdir(workdir)) == sorted(
      [r["trial"] for r in rows] + ["study.db", "sweep.json", "results.csv", "results.md",
                                    "summary.png", "curves.png"])


def test_parallel_trials_in_processes_equal_the_same_trials_in_turn(small_config, tmp_path):
  small_config.num_epochs = 1
  grid = {"batch_size": [32, 64]}
  together = _sweep(small_config, tmp_path / "parallel", grid, parallel=2)
  in_turn = _sweep(small_config, tmp_path / "in_turn", grid)
  for mine, theirs in zip(together, in_turn):
    assert mine["status"] == "finished"
    assert mine["test_loss"] == pytest.approx(theirs["test_loss"], rel=1e-5)


def _set_model(config, **fields) -> None:
  with config.unlocked():
    config.model = ml_collections.ConfigDict(fields)


def _numbered_configs(config, values: list[dict]) -> list:
  configs = []
  for trial_values in values:
    configs.append(spec.with_values(config, trial_values))
  return configs


def _assert_group_equals_separate_runs(configs, tmp_path) -> list[dict]:
  group_dirs = [str(tmp_path / "group" / f"t{i}") for i in range(len(configs))]
  summaries = vectorised.train_group(configs, group_dirs)
  for i, config in enumerate(configs):
    alone = str(tmp_path / "alone" / f"t{i}")
    expected = train.train_and_evaluate(config, alone)
    _assert_same_summary(summaries[i], expected)
    mine, theirs = _arrays(group_dirs[i]), _arrays(alone)
    assert jax.tree.structure(mine) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs)):
      np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
  assert len({round(s["test_loss"], 6) for s in summaries}) == len(configs)
  return summaries


def test_a_group_differing_in_weight_decay_dropout_and_label_smoothing_equals_separate_runs(
    small_config, tmp_path, caplog):
  _set_model(small_config, name="mlp", hidden=(32,), dropout=0.0)
  small_config.optimizer.name, small_config.optimizer.momentum = "sgd", 0.9
  small_config.optimizer.learning_rate = 0.05
  # Decay 0 builds no decay step in a single run; the group's step has one for every trial.
  configs = _numbered_configs(small_config, [
      {"optimizer.weight_decay": 0.0, "model.dropout": 0.0, "loss.label_smoothing": 0.0},
      {"optimizer.weight_decay": 0.01, "model.dropout": 0.3, "loss.label_smoothing": 0.1},
      {"optimizer.weight_decay": 0.0, "model.dropout": 0.5, "loss.label_smoothing": 0.0},
      {"optimizer.weight_decay": 0.05, "model.dropout": 0.0, "loss.label_smoothing": 0.2}])
  with caplog.at_level("INFO"):
    _assert_group_equals_separate_runs(configs, tmp_path)
  assert ("each with its own optimizer.weight_decay, model.dropout, loss.label_smoothing"
          in caplog.text)


def test_a_group_differing_in_the_positive_class_weight_equals_separate_runs(tmp_path):
  from configs import binary_mlp  # pylint: disable=import-outside-toplevel
  config = binary_mlp.get_config()
  config.num_epochs, config.progress_bar, config.compilation_cache_dir = 3, False, ""
  config.logging.layer_stats = False
  config.optimizer.name, config.optimizer.momentum = "sgd", 0.9
  configs = _numbered_configs(config, [{"loss.pos_weight": w, "seed": s}
                                       for w in (1.0, 4.0) for s in (0, 1)])
  _assert_group_equals_separate_runs(configs, tmp_path)


def test_a_dropout_rate_the_model_cannot_trace_runs_the_trials_one_by_one(small_config):
  _set_model(small_config, name="digit_transformer", dim=16, depth=1, heads=2, mlp_dim=16,
             dropout=0.0)
  configs = _numbered_configs(small_config, [{"model.dropout": r} for r in (0.0, 0.1)])
  with pytest.raises(vectorised.CannotGroup,
                     match=r"config.model.dropout differs but blocks/0/attention "
                           r"\(MultiHeadAttention\) drops attention weights with its own rate"):
    vectorised.train_group(configs, ["/nonexistent/a", "/nonexistent/b"])
