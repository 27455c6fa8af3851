"""The loop's policies, each on its own: early stopping, the non-finite watch, config checks."""

import subprocess
import sys

import numpy as np
import pytest

from jaxlearn import config as config_lib
from jaxlearn.errors import ConfigError, NonFiniteLossError
from jaxlearn.training import early_stopping, nonfinite
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
    ("batch_size", 0, r"^config\.batch_size=0 is not allowed: it must be at least 1; use a "
     r"batch of 1 or more examples\.$"),
    ("eval_batch_size", 0, r"^config\.eval_batch_size=0 is not allowed: it must be at least 1"),
    ("optimizer.accumulate_steps", 0, r"^config\.optimizer\.accumulate_steps=0 is not allowed: "
     r"it must be at least 1"),
    ("data.max_train_examples", -5, r"^config\.data\.max_train_examples=-5 is not allowed: it "
     r"must be at least 0"),
    ("early_stopping.patience", -1, r"^config\.early_stopping\.patience=-1 is not allowed"),
    ("optimizer.learning_rate", -1.0, r"^config\.optimizer\.learning_rate=-1\.0 is not allowed: "
     r"it must be above 0; the learning rate must be positive"),
    ("optimizer.nesterov", True, r"nesterov=True needs momentum"),
    ("precision", "fp16", r"^config\.precision='fp16' is not allowed: it must be one of "
     r"\['fp32', 'bf16'\]; use one of them\.$"),
    ("optimizer.weight_decay", -0.1, r"^config\.optimizer\.weight_decay=-0\.1 is not allowed: "
     r"it must be at least 0; use 0 \(off\) or a positive decay such as 0\.01\.$"),
    ("loss.label_smoothing", 1.5, r"^config\.loss\.label_smoothing=1\.5 is not allowed: it "
     r"must be in \[0, 1\); use 0 \(off\) or a small share such as 0\.1\.$"),
    ("optimizer.momentum", 1.5, r"^config\.optimizer\.momentum=1\.5 is not allowed: it must be "
     r"in \[0, 1\)"),
    ("model.name", "lenet", r"^config\.model\.name='lenet' is not allowed: it must be one of "
     r"\[.*'lenet5'"),
    ("augment.ops", "random_crop,flip", r"^config\.augment\.ops='random_crop,flip' is not "
     r"allowed: it must be made of \["),
    ("freeze", "conv[", r"^config\.freeze='conv\[' is not allowed: it must be comma-separated "
     r"regular expressions"),
    ("data.split_ratios", "7:2", r"^config\.data\.split_ratios='7:2' is not allowed"),
    ("schedule.milestones", (80, 30), r"^config\.schedule\.milestones=\(80, 30\) is not allowed"),
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


def _undeclared(config, rules, prefix="") -> list[str]:
  """Leaves of `config` with no declared rule (walks the tree as the user sees it)."""
  missing = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    if hasattr(value, "items"):
      missing += _undeclared(value, rules, path + ".")
    elif path not in rules:
      missing.append(path)
  return missing


def test_every_field_of_the_default_config_has_a_declared_rule():
  rules = config_lib.rules()
  assert not _undeclared(config_lib.default_config(), rules)
  # Every numeric or choice field's rule refuses something; only free text (paths, columns,
  # the monitor, checked against the task when the run is built) may take any string.
  flat = {p: r for p, r in rules.items()}
  config = config_lib.default_config()
  for path, rule in flat.items():
    value = config
    for key in path.split("."):
      value = value[key]
    if rule.free:
      assert isinstance(value, str), path
    assert rule.allows(value, config) or (value is None and rule.optional), path


def test_a_field_added_without_a_rule_is_found():
  config = config_lib.default_config()
  with config.unlocked():
    config.optimizer.new_knob = 3
    config.extra = {"depth": 2}
  assert sorted(_undeclared(config, config_lib.rules())) == ["extra.depth", "optimizer.new_knob"]


def test_validate_accepts_the_defaults_and_every_experiment():
  import importlib  # pylint: disable=import-outside-toplevel
  config_lib.validate(config_lib.default_config())
  for path in sorted((PROJECT_ROOT / "configs").glob("*.py")):
    if path.stem != "__init__":
      config_lib.validate(importlib.import_module(f"configs.{path.stem}").get_config())


def test_the_command_line_modules_import_together():
  """main.py and plot.py both take --workdir; importing both must not clash."""
  subprocess.run([sys.executable, "-c",
                  "import jaxlearn.main, jaxlearn.plot, jaxlearn.evaluation.curves"],
                 cwd=PROJECT_ROOT, check=True, capture_output=True)
