"""`jaxlearn.ensemble`: averaged probabilities of several runs, checked and exported."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import mnist_lenet
from jaxlearn.deploy import ensemble
from jaxlearn.errors import ConfigError
from jaxlearn.evaluation import evaluate
from jaxlearn.runs import inference
from jaxlearn.training import train
from tests import runs
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def lenet_seeds(finished_runs, tmp_path_factory):
  """The session's LeNet-5 run and another seed of it on the same data."""
  config = mnist_lenet.get_config()
  config.update_from_flattened_dict({"data.dir": json.load(open(os.path.join(
      finished_runs["lenet"], "config.json")))["data"]["dir"]})
  config.seed = 1
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 80, 2
  config.progress_bar, config.compilation_cache_dir = False, ""
  other = str(tmp_path_factory.mktemp("seed1") / "lenet")
  train.train_and_evaluate(config, other)
  return [finished_runs["lenet"], other]


def test_the_ensemble_averages_the_members_probabilities(lenet_seeds):
  result = ensemble.evaluate_ensemble(lenet_seeds, "test")
  probabilities, targets = [], None
  for workdir, member in zip(lenet_seeds, result["members"]):
    predictor = inference.load_predictor(workdir)
    _, stored, targets = evaluate.split_inputs(predictor.run, "test")
    probabilities.append(predictor.predict_stored(stored))
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert member["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  expected = np.mean(np.mean(probabilities, axis=0).argmax(1) == targets)
  assert result["ensemble"]["accuracy"] == pytest.approx(expected)
  assert result["num_examples"] == 160


def test_members_of_other_tasks_or_splits_are_refused(lenet_seeds, finished_runs):
  with pytest.raises(ConfigError, match="differs from .* in its input"):
    ensemble.evaluate_ensemble([lenet_seeds[0], finished_runs["text"]])
  with pytest.raises(ConfigError, match="at least two workdirs"):
    ensemble.evaluate_ensemble(lenet_seeds[:1])


def test_the_exported_ensemble_runs_without_jaxlearn(lenet_seeds, tmp_path):
  result = subprocess.run([sys.executable, "-m", "jaxlearn.ensemble",
                           f"--workdirs={','.join(lenet_seeds)}", f"--out={tmp_path / 'e'}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "ensemble of 2: accuracy " in result.stdout
  predictors = [inference.load_predictor(w) for w in lenet_seeds]
  _, stored, _ = evaluate.split_inputs(predictors[0].run, "test")
  outputs = runs.call_artifact_in_fresh_process(str(tmp_path / "e"), stored[:7], str(tmp_path))
  expected = np.mean([p.predict_stored(stored[:7]) for p in predictors], axis=0)
  np.testing.assert_allclose(outputs, expected, atol=1e-5)
