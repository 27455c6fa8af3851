"""Studies (python -m jaxlearn.sweep --study=NAME): every study file builds valid trials, the
command runs one end to end, its recorded results are in the project, and (slow) every study's
--smoke setting trains."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from jaxlearn import sweep
from jaxlearn.errors import ConfigError
from jaxlearn.sweeps import study
from tests.conftest import PROJECT_ROOT, real_data_dir

STUDIES_DIR = os.path.join(PROJECT_ROOT, "experiments", "studies")
sys.path.insert(0, STUDIES_DIR)
import record  # pylint: disable=wrong-import-position  # experiments/studies/record.py

# The questions of issue "the learning path's studies", each answered by one study file.
STUDIES = record.STUDIES


def test_every_study_file_is_listed_and_builds_valid_trials():
  files = sorted(f[:-3] for f in os.listdir(STUDIES_DIR)
                 if f.endswith(".py") and f != "record.py")
  assert files == sorted(STUDIES)
  for name in STUDIES:
    definition = study.load(name)
    full, smoke = study.trials(definition), study.trials(definition, smoke=True)
    combinations = max(1, len(definition.settings)) * math.prod(
        len(v) for v in definition.grid.values())
    assert len(full) == combinations * len(definition.seeds), name
    shrunk = {**study.SMOKE, **definition.smoke}  # A grid over those keeps one value.
    assert len(smoke) == max(1, len(definition.settings)) * math.prod(
        1 if k in shrunk else len(v) for k, v in definition.grid.items()), name  # One seed.
    assert len({t.name for t in full}) == len(full), name
    assert all(t.config.num_epochs == 1 for t in smoke), name
    # Each setting really reaches its trial's config.
    for trial in full:
      for key, value in definition.settings.get(trial.values.get("setting", ""), {}).items():
        group, field = key.split(".") if "." in key else ("", key)
        assert (trial.config[group][field] if group else trial.config[field]) == value


def _write_study(tmp_path, fake_root, learning_rates, failures_expected) -> str:
  path = tmp_path / "tiny.py"
  path.write_text(f'''
from configs import mnist_lenet
from jaxlearn.sweeps.study import Study

def get_study():
  config = mnist_lenet.get_config()
  config.data.dir = {fake_root!r}
  config.optimizer.name, config.schedule.name = "sgd", "constant"
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 80, 1
  config.progress_bar, config.compilation_cache_dir = False, ""
  config.logging.layer_stats = False
  return Study(question="Does a tiny study run?", config=config,
               grid={{"optimizer.learning_rate": {list(learning_rates)!r}}}, seeds=(0,),
               failures_expected={failures_expected})
''')
  return str(path)


def _cli(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=PROJECT_ROOT)
  return subprocess.run([sys.executable, "-m", "jaxlearn.sweep", *args], cwd=PROJECT_ROOT,
                        env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_a_study_whose_trials_diverge_as_expected_reports_them_and_exits_0(fake_root, tmp_path):
  path = _write_study(tmp_path, fake_root, (0.05, 1e9), failures_expected=True)
  done = _cli(f"--study={path}", f"--workdir={tmp_path / 'run'}")
  assert done.returncode == 0, done.stderr
  assert "# Study: Does a tiny study run?" in done.stdout
  assert "1 of 2 trials diverged or turned non-finite, as this study shows happens" in done.stdout
  with open(tmp_path / "run" / "results.csv", encoding="utf-8") as f:
    rows = {r["trial"]: r for r in csv.DictReader(f)}
  assert rows["learning_rate=0.05,seed=0"]["status"] == "finished"
  assert rows["learning_rate=1e+09,seed=0"]["status"].startswith("failed")
  # The same failure in a study that does not expect it is an error.
  path = _write_study(tmp_path, fake_root, (0.05, 1e9), failures_expected=False)
  done = _cli(f"--study={path}", f"--workdir={tmp_path / 'unexpected'}")
  assert done.returncode == 2
  assert "1 of 2 trials failed (learning_rate=1e+09,seed=0)" in done.stderr


def test_study_flags_that_do_not_go_together_are_refused(tmp_path):
  with pytest.raises(ConfigError, match=r"--study=nope: no study of that name in .*; choose "
                                        r"one of \['augmentation', 'batch_size', "):
    study.find("nope")
  done = _cli("--study=optimizers", "--config=configs/mnist_lenet.py",
              f"--workdir={tmp_path / 'w'}", timeout=120)
  assert done.returncode == 2
  assert ("jaxlearn: error: --study=optimizers defines the config, settings and seeds; give it "
          "without --config") in done.stderr
  done = _cli("--config=configs/mnist_lenet.py", "--smoke", f"--workdir={tmp_path / 'w'}",
              timeout=120)
  assert done.returncode == 2 and "--smoke shrinks a --study" in done.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("name", STUDIES)
def test_every_studys_result_is_recorded_with_its_machine(name):
  folder = os.path.join(STUDIES_DIR, "results", name)
  with open(os.path.join(folder, "run.json"), encoding="utf-8") as f:
    run = json.load(f)
  assert run["exit_code"] == 0 and run["cpu"] and run["date"], run
  with open(os.path.join(folder, "results.md"), encoding="utf-8") as f:
    table = f.read()
  definition = study.load(name)
  assert table.startswith(f"# Study: {definition.question}\n")  # Not a --smoke run.
  assert os.path.exists(os.path.join(folder, "summary.png"))
  with open(os.path.join(STUDIES_DIR, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert f"`python -m jaxlearn.sweep --study={name} --workdir=" in readme
  assert f"results/{name}/results.md" in readme


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_every_study_trains_in_its_smoke_setting(name, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXLEARN_DATA_DIR", real_data_dir())
  rows = sweep.run_study(name, workdir=str(tmp_path / name), smoke=True)
  assert len(rows) == len(study.trials(study.load(name), smoke=True))
  assert all(r["status"] == "finished" for r in rows), rows
  with open(tmp_path / name / "results.md", encoding="utf-8") as f:
    assert f.read().startswith(f"# Study: {study.load(name).question} (--smoke)")
