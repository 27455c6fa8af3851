"""The loop's policies, each on its own: early stopping, the non-finite watch, config checks."""

import subprocess
import sys

import numpy as np
import pytest

from jaxlearn import config as config_lib
from jaxlearn import early_stopping, nonfinite
from jaxlearn.errors import ConfigError, NonFiniteLossError
from tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize("value,best,mode,delta,expected", [
    (0.5, None, "max", 0.0, True), (0.6, 0.5, "max", 0.0, True), (0.5, 0.5, "max", 0.0, False),
    (0.55, 0.5, "max", 0.1, False), (0.61, 0.5, "max", 0.1, True),
    (0.4, 0.5, "min", 0.0, True), (0.6, 0.5, "min", 0.0, False), (0.45, 0.5, "min", 0.1, False),
])
def test_improvement_respects_mode_and_margin(value, best, mode, delta, expected):
  assert early_stopping.improved(value, best, mode, delta) is expected


def test_stop_reason_waits_for_patience_epochs():
  config = config_lib.default_config()
  config.early_stopping.patience = 2
  assert early_stopping.stop_reason(epochs_done=4, best_epoch=3, best_value=0.9,
                                    config=config) == ""
  assert early_stopping.stop_reason(5, 3, 0.9, config) == (
      "early stopping: val accuracy has not improved by more than 0.0 for 2 epochs (best 0.9 "
      "at epoch 3)")
  config.early_stopping.patience = 0  # Off.
  assert early_stopping.stop_reason(50, 1, 0.9, config) == ""


def _health(flags):
  flags = np.asarray(flags, bool)
  return {"loss": np.where(flags, np.nan, 1.0), "grad_norm": np.ones(len(flags)),
          "nonfinite": flags}


def test_the_watch_stops_at_the_first_nonfinite_step():
  watch = nonfinite.Watch("stop", learning_rate=0.5)
  watch.check(_health([0, 0, 0]), last_step=3)
  with pytest.raises(NonFiniteLossError, match=r"non-finite at step 5 \(loss nan"):
    watch.check(_health([0, 1, 0]), last_step=6)


def test_skipping_counts_nonfinite_steps_in_a_row_across_windows():
  watch = nonfinite.Watch("skip", max_consecutive=3)
  watch.check(_health([0, 1, 1]), last_step=3)  # Two in a row so far.
  watch.check(_health([1, 0]), last_step=5)  # Three, then a good step resets the count.
  watch.check(_health([1, 1, 1]), last_step=8)
  with pytest.raises(NonFiniteLossError, match="at step 9 .*after 4 such steps in a row"):
    watch.check(_health([1]), last_step=9)


@pytest.mark.parametrize("path,value,message", [
    ("batch_size", 0, r"^config\.batch_size=0 is below 1; use a batch of 1 or more examples\.$"),
    ("eval_batch_size", 0, r"^config\.eval_batch_size=0 is below 1"),
    ("optimizer.accumulate_steps", 0, r"^config\.optimizer\.accumulate_steps=0 is below 1"),
    ("data.max_train_examples", -5, r"^config\.data\.max_train_examples=-5 is below 0"),
    ("early_stopping.patience", -1, r"^config\.early_stopping\.patience=-1 is below 0"),
    ("optimizer.learning_rate", -1.0, r"^config\.optimizer\.learning_rate=-1\.0; the learning "
     r"rate must be positive"),
    ("optimizer.nesterov", True, r"nesterov=True needs momentum"),
    ("precision", "fp16", r"^config\.precision='fp16'; use one of \['fp32', 'bf16'\]\.$"),
])
def test_validate_names_the_field_and_the_fix(path, value, message):
  config = config_lib.default_config()
  *parents, key = path.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  node[key] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(config)


def test_validate_accepts_the_defaults_and_every_experiment():
  import importlib  # pylint: disable=import-outside-toplevel
  config_lib.validate(config_lib.default_config())
  for path in sorted((PROJECT_ROOT / "configs").glob("*.py")):
    if path.stem != "__init__":
      config_lib.validate(importlib.import_module(f"configs.{path.stem}").get_config())


def test_the_command_line_modules_import_together():
  """main.py and plot.py both take --workdir; importing both must not clash."""
  subprocess.run([sys.executable, "-c", "import jaxlearn.main, jaxlearn.plot, jaxlearn.curves"],
                 cwd=PROJECT_ROOT, check=True, capture_output=True)
