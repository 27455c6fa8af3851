"""`python -m jaxlearn.main` as a user runs it: exit codes, messages, Ctrl-C and resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT_ROOT, make_fake_mnist

CONFIG = os.path.join("configs", "mnist_lenet.py")


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **extra)
  env.pop("JAXLEARN_DATA_DIR", None)
  return env


def _main(*args, env=None):
  return subprocess.run([sys.executable, "-m", "jaxlearn.main", f"--config={CONFIG}", *args],
                        cwd=PROJECT_ROOT, env=env or _env(), capture_output=True, text=True,
                        timeout=300)


def test_unknown_config_key_names_it_and_its_siblings(tmp_path):
  result = _main(f"--workdir={tmp_path}", "--config.optimizer.lr=0.1")
  assert result.returncode == 2
  assert ("Unknown config key 'config.optimizer.lr' in '--config.optimizer.lr=0.1'. "
          "config.optimizer has: accumulate_steps, alpha, b1, b2, clip_norm, clip_value, eps, "
          "learning_rate,") in result.stderr
  assert not os.listdir(tmp_path)


def test_no_data_source_says_how_to_get_the_files(tmp_path):
  result = _main(f"--workdir={tmp_path / 'w'}")  # Offline: the tests' mirror is a closed port.
  assert result.returncode == 2
  assert "jaxlearn: error: No mnist data: its files are not in " in result.stderr
  assert "downloading http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz failed" in result.stderr
  assert "pass --config.data.dir=ROOT (or set JAXLEARN_DATA_DIR=ROOT)" in result.stderr
  assert not os.path.exists(tmp_path / "w")


def test_batch_size_not_divisible_by_devices(tmp_path):
  root = make_fake_mnist(tmp_path / "data")
  env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
  result = _main(f"--workdir={tmp_path / 'w'}", f"--config.data.dir={root}",
                 "--config.batch_size=100", env=env)
  assert result.returncode == 2
  assert ("config.batch_size=100 is not divisible by the 8 devices the batch is split over; "
          "set --config.batch_size to a multiple of 8 (e.g. 96).") in result.stderr


def test_ctrl_c_saves_latest_and_rerun_resumes_from_that_step(tmp_path):
  root = make_fake_mnist(tmp_path / "data", num_train=12800, num_test=320)
  args = [sys.executable, "-m", "jaxlearn.main", f"--config={CONFIG}", f"--workdir={tmp_path / 'w'}",
          f"--config.data.dir={root}", "--config.batch_size=64", "--config.num_epochs=2",
          "--config.log_every_steps=5", "--config.progress_bar=false",
          f"--config.compilation_cache_dir={tmp_path / 'cache'}"]
  process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=_env(), stderr=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
  seen = []
  for line in process.stderr:
    seen.append(line)
    if "step 20 train" in line:
      process.send_signal(signal.SIGINT)
      break
  rest, _ = process.communicate(timeout=120)[::-1]
  log = "".join(seen) + rest
  assert process.returncode == 130, log
  stopped_at = int(log.split("Stopped at step ")[1].split(";")[0])
  assert 20 <= stopped_at < 360  # 180 steps per epoch, 2 epochs.
  latest = os.listdir(tmp_path / "w" / "checkpoints" / "latest")
  assert latest == [str(stopped_at)]
  # The compiled programs went to the cache the rerun loads them from.
  cached = os.listdir(tmp_path / "cache")
  assert any(name.startswith("jit_train_chunk-") for name in cached), cached
  assert "CPU kernels on (jaxlearn.xla_cpu" in log

  resumed = subprocess.run(args, cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True,
                           timeout=300)
  assert resumed.returncode == 0, resumed.stderr
  epoch = stopped_at // 180 + 1
  assert f"Resuming from {tmp_path / 'w' / 'checkpoints'} at step {stopped_at} (epoch {epoch})" \
      in resumed.stderr
  summary = json.loads((tmp_path / "w" / "summary.json").read_text())
  assert summary["epochs_run"] == 2
  assert summary["test_accuracy"] > 0.7  # The fake labels are 20% noise: at most ~82%.
  # The console ends with the run in words, the figures rounded from summary.json's.
  assert f"Test, best checkpoint: accuracy {100 * summary['test_accuracy']:.2f}%, loss " \
      f"{summary['test_loss']:.4g}, top5_accuracy " in resumed.stdout
  assert f"Best epoch {summary['best_epoch']} of 2 run: val accuracy " in resumed.stdout
  assert "Stopped: completed config.num_epochs=2;" in resumed.stdout
  assert f"curves: python -m jaxlearn.plot --workdir={tmp_path / 'w'}" in resumed.stdout
  # Each epoch's line shows training and validation side by side.
  assert re.search(r"Epoch 2/2: train accuracy [\d.]+%, loss \S+ \| val accuracy [\d.]+%, "
                   r"loss \S+, top5_accuracy [\d.]+% \| best val accuracy [\d.]+% at epoch \d "
                   r"\| [\d.]+ s", resumed.stderr)


@pytest.mark.parametrize("args,message", [
    (["--config=configs/nope.py"], "The config file 'configs/nope.py' (--config) does not exist; "
     "pass one of configs/*.py"),
    (["--config.batch_size=abc"], "flag --config.batch_size=abc: invalid literal for int() with "
     "base 10: 'abc'. Check the flag's spelling and value type"),
    (["--config.batch_size=0"], "config.batch_size=0 is not allowed: it must be at least 1; use a "
     "batch of 1 or more examples."),
    (["--config.optimizer.learning_rate=-1"], "config.optimizer.learning_rate=-1.0 is not "
     "allowed: it must be above 0; the learning rate must be positive"),
    (["--config.optimizer.weight_decay=-0.1"], "config.optimizer.weight_decay=-0.1 is not allowed: "
     "it must be at least 0; use 0 (off) or a positive decay such as 0.01."),
    (["--config.loss.label_smoothing=1.5"], "config.loss.label_smoothing=1.5 is not allowed: it "
     "must be in [0, 1); use 0 (off) or a small share such as 0.1."),
])
def test_bad_input_is_one_message_and_exit_2(tmp_path, args, message):
  command = [sys.executable, "-m", "jaxlearn.main", f"--workdir={tmp_path / 'w'}"]
  if not any(a.startswith("--config=") for a in args):
    command.append(f"--config={CONFIG}")
  result = subprocess.run(command + args, cwd=PROJECT_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 2, result.stderr
  assert f"jaxlearn: error: {message}" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w")


def test_a_config_file_with_a_syntax_error_or_no_config(tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  failing = tmp_path / "failing.py"
  failing.write_text("def get_config():\n  return 1 / 0\n")
  for path, message in ((broken, "has a syntax error at line 1"),
                        (failing, "failed to give a config (ZeroDivisionError: division by zero)")):
    result = subprocess.run([sys.executable, "-m", "jaxlearn.main", f"--config={path}",
                             f"--workdir={tmp_path / 'w'}"], cwd=PROJECT_ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_workdir_that_is_a_file_is_exit_2(tmp_path):
  root = make_fake_mnist(tmp_path / "data")
  (tmp_path / "file").write_text("mine")
  result = _main(f"--workdir={tmp_path / 'file'}", f"--config.data.dir={root}")
  assert result.returncode == 2
  assert "is a file, not a directory" in result.stderr
  assert (tmp_path / "file").read_text() == "mine"


def test_sigterm_during_start_up_is_exit_130_and_writes_nothing(tmp_path):
  root = make_fake_mnist(tmp_path / "data")
  process = subprocess.Popen([sys.executable, "-m", "jaxlearn.main", f"--config={CONFIG}",
                              f"--workdir={tmp_path / 'w'}", f"--config.data.dir={root}"],
                             cwd=PROJECT_ROOT, env=_env(), stderr=subprocess.PIPE, text=True)
  time.sleep(1.0)  # Importing JAX and flax: long before any training.
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == 130, stderr
  assert "jaxlearn: stopped by SIGTERM." in stderr
  assert not os.path.exists(tmp_path / "w")


def _tree(directory) -> dict[str, bytes]:
  return {os.path.relpath(os.path.join(root, name), directory):
          open(os.path.join(root, name), "rb").read()
          for root, _, names in os.walk(directory) for name in names if name != ".lock"}


def test_a_corrupt_best_checkpoint_is_one_message_and_changes_nothing(tmp_path):
  root = make_fake_mnist(tmp_path / "data")
  args = (f"--workdir={tmp_path / 'w'}", f"--config.data.dir={root}", "--config.num_epochs=1",
          "--config.batch_size=64")
  assert _main(*args).returncode == 0
  best = tmp_path / "w" / "checkpoints" / "best"
  for path in best.rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  before = _tree(tmp_path / "w")
  result = _main(*args)
  assert result.returncode == 2
  error_lines = [line for line in result.stderr.splitlines()
                 if line.startswith(("ERROR", "Traceback"))]
  assert len(error_lines) == 0, result.stderr  # No Orbax log errors, no traceback ...
  assert re.search(r"jaxlearn: error: The checkpoint \S+/best/\d+ could not be read .*"
                   "Nothing was changed in the workdir.", result.stderr)  # ... one message.
  assert _tree(tmp_path / "w") == before  # Not even an empty TensorBoard event file.


def test_the_console_is_plain_and_the_workdir_keeps_the_full_log(tmp_path):
  root = make_fake_mnist(tmp_path / "data")
  args = (f"--workdir={tmp_path / 'w'}", f"--config.data.dir={root}", "--config.num_epochs=1",
          "--config.batch_size=64")
  result = _main(*args)
  assert result.returncode == 0, result.stderr
  epoch = next(line for line in result.stderr.splitlines() if "Epoch 1/1:" in line)
  assert epoch.startswith("Epoch 1/1: train accuracy ")  # No absl prefix on the console.
  log = (tmp_path / "w" / "train.log").read_text()
  assert re.search(r"^I\d{4} [\d:.]+ +\d+ progress\.py:\d+\] Epoch 1/1: train accuracy ", log,
                   re.M)
  prefixed = _main(*args, "--log_prefix")  # A re-test of the finished run, prefixed.
  assert re.search(r"^I\d{4} .*\] .*already holds all 1 epochs", prefixed.stderr, re.M)
