"""A workdir holds one run: another config is refused, two processes never share it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from jaxlearn.errors import WorkdirError
from jaxlearn.runs import workdir as workdir_lib
from jaxlearn.training import train


def _records(workdir):
  return {name: (workdir / name).read_bytes()
          for name in ("summary.json", "config.json", "preprocessing.json")}


def test_another_experiment_on_a_finished_workdir_is_refused_and_changes_nothing(
    small_config, tmp_path):
  workdir = tmp_path / "run"
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, str(workdir))
  before = _records(workdir)
  small_config.data.name = "fashion_mnist"
  small_config.seed = 3
  with pytest.raises(WorkdirError, match=r"holds a run of another config \(data\.name: 'mnist' "
                     r"there, 'fashion_mnist' now; seed: 0 there, 3 now\)\. Use a new --workdir"):
    train.train_and_evaluate(small_config, str(workdir))
  assert _records(workdir) == before


@pytest.mark.parametrize("path,value", [("data.val_fraction", 0.2), ("augment.ops", "rotation"),
                                        ("optimizer.learning_rate", 0.5),
                                        ("data.max_train_examples", 100), ("task", "binary")])
def test_every_field_that_changes_the_run_is_checked(small_config, tmp_path, path, value):
  record = workdir_lib.config_record(small_config)
  *parents, key = path.split(".")
  node = small_config
  for parent in parents:
    node = node[parent]
  node[key] = value
  assert workdir_lib.differing_fields(record, small_config) == [path]


def test_fields_that_extend_or_observe_a_run_may_change(small_config, tmp_path):
  record = workdir_lib.config_record(small_config)
  small_config.num_epochs = 20
  small_config.early_stopping.patience = 3
  small_config.progress_bar = True
  small_config.data.dir = "/elsewhere"
  assert workdir_lib.differing_fields(record, small_config) == []


def test_a_workdir_from_before_a_field_existed_counts_it_as_its_default(small_config):
  record = workdir_lib.config_record(small_config)
  del record["freeze"], record["prune"]  # Written by a version without these fields.
  assert workdir_lib.differing_fields(record, small_config) == []
  small_config.prune.sparsity = 0.5  # Using the new feature is another run.
  assert workdir_lib.differing_fields(record, small_config) == ["prune.sparsity"]


def test_a_function_in_the_config_matches_itself_across_processes(small_config):
  small_config.schedule.name = "lambda"
  small_config.schedule.lr_lambda = _halving
  record = workdir_lib.config_record(small_config)
  assert record["schedule"]["lr_lambda"] == "<function tests.test_workdir._halving>"
  assert workdir_lib.differing_fields(record, small_config) == []


def _halving(epoch):
  return 0.5**epoch


def test_an_early_stopped_run_continues_when_patience_or_epochs_are_raised(small_config,
                                                                           tmp_path,
                                                                           monkeypatch):
  real_evaluate = train.evaluate
  monkeypatch.setattr(train, "evaluate", lambda *args: {**real_evaluate(*args), "accuracy": 0.5})
  workdir = str(tmp_path / "run")
  small_config.num_epochs = 6
  small_config.early_stopping.patience = 1
  summary = train.train_and_evaluate(small_config, workdir)
  assert summary["epochs_run"] == 2 and summary["stop_reason"].startswith("early stopping")
  assert train.train_and_evaluate(small_config, workdir)["epochs_run"] == 2  # Same config.
  small_config.early_stopping.patience = 3
  summary = train.train_and_evaluate(small_config, workdir)
  assert summary["epochs_run"] == 4 and summary["stop_reason"].startswith("early stopping")
  small_config.num_epochs = 7  # More epochs, same patience: one more epoch, then it stops.
  assert train.train_and_evaluate(small_config, workdir)["epochs_run"] == 5


def test_a_workdir_in_use_is_refused_naming_the_process(small_config, tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lib.claim(workdir, small_config):
    with pytest.raises(WorkdirError, match=rf"is in use by a run that is still going \(process "
                       rf"{os.getpid()} on "):
      with workdir_lib.claim(workdir, small_config):
        pass
  with workdir_lib.claim(workdir, small_config):  # Released: free again.
    pass


def test_a_killed_runs_lock_does_not_block_the_next(small_config, tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  holder = subprocess.Popen(
      [sys.executable, "-c", "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); "
       "fcntl.flock(f, fcntl.LOCK_EX); f.write('process %d' % os.getpid()); f.flush(); "
       "print('locked', flush=True); time.sleep(60)", os.path.join(workdir, ".lock")],
      stdout=subprocess.PIPE, text=True)
  deadline = time.time() + 30
  while holder.stdout.readline().strip() != "locked" and time.time() < deadline:
    pass
  with pytest.raises(WorkdirError, match=rf"\(process {holder.pid}\)"):
    with workdir_lib.claim(workdir, small_config):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lib.claim(workdir, small_config):
    pass


def test_a_workdir_that_is_a_file_or_cannot_be_written_is_refused(small_config, tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(WorkdirError, match=r"is a file, not a directory"):
    with workdir_lib.claim(str(path), small_config):
      pass
  with pytest.raises(WorkdirError, match=r"^Cannot write to --workdir=/proc/jaxlearn_run "):
    with workdir_lib.claim("/proc/jaxlearn_run", small_config):
      pass
