"""`jaxlearn.evaluate`: the report's numbers against scikit-learn on the same predictions."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as sk

from jaxlearn.evaluation import analysis, evaluate
from jaxlearn.runs import inference
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _outputs(workdir, split):
  predictor = inference.load_predictor(workdir)
  _, stored, targets = evaluate.split_inputs(predictor.run, split)
  return predictor, evaluate.predict_in_batches(predictor, stored, 64), targets


def test_classification_report_equals_scikit_learn_and_the_training_run(finished_runs):
  workdir = finished_runs["lenet"]
  report = evaluate.evaluate_run(workdir, "test")
  _, probabilities, targets = _outputs(workdir, "test")
  predicted = probabilities.argmax(1)
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert report["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  assert report["accuracy"] == pytest.approx(sk.accuracy_score(targets, predicted))
  assert 0.3 < report["accuracy"] < 0.95  # Mistakes to analyse (20% of the labels are noise).
  assert report["top5_accuracy"] == pytest.approx(
      sk.top_k_accuracy_score(targets, probabilities, k=5, labels=range(10)))
  assert report["top5_accuracy"] == pytest.approx(summary["test_top5_accuracy"], abs=1e-6)
  precision, recall, f1, support = sk.precision_recall_fscore_support(
      targets, predicted, labels=range(10), zero_division=0)
  for c, row in enumerate(report["per_class"]):
    assert row["class"] == c and row["name"] == str(c)
    assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
        (precision[c], recall[c], f1[c], support[c]))
  for average in ("macro", "weighted"):
    expected = sk.precision_recall_fscore_support(targets, predicted, labels=range(10),
                                                  average=average, zero_division=0)[:3]
    got = report[f"{average}_avg"]
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(expected)
  np.testing.assert_array_equal(report["confusion_matrix"],
                                sk.confusion_matrix(targets, predicted, labels=range(10)))
  assert report["expected_calibration_error"] == pytest.approx(
      _calibration_error(probabilities.max(1), predicted == targets))
  for name in ("report.json", "confusion_matrix.png", "mistakes.png", "reliability.png"):
    path = os.path.join(workdir, "evaluation", "test", name)
    assert open(path, "rb").read(4) in (b"\x89PNG", b'{\n "')


def _calibration_error(confidence, correct, bins=15):
  """ECE written out with np.digitize, independently of jaxlearn.evaluation.analysis."""
  which = np.minimum(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1], right=True),
                     bins - 1)
  return sum(abs(correct[which == b].mean() - confidence[which == b].mean()) *
             (which == b).mean() for b in range(bins) if (which == b).any())


def test_the_validation_split_is_rebuilt_as_training_cut_it(finished_runs):
  workdir = finished_runs["lenet"]
  report = evaluate.evaluate_run(workdir, "val", figures=False)
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert report["accuracy"] == pytest.approx(summary["best_val_accuracy"], abs=1e-6)
  assert report["num_examples"] == 64  # config.data.val_fraction=0.1 of the 640 training examples.


def test_binary_report_equals_scikit_learn_with_class_names_and_mistakes(finished_runs):
  workdir = finished_runs["table"]
  report = evaluate.evaluate_run(workdir, "test")
  _, probability, targets = _outputs(workdir, "test")
  assert report["roc_auc"] == pytest.approx(sk.roc_auc_score(targets, probability))
  assert report["average_precision"] == pytest.approx(
      sk.average_precision_score(targets, probability))
  fpr, tpr, _ = sk.roc_curve(targets, probability, drop_intermediate=False)
  np.testing.assert_allclose(report["roc_curve"]["fpr"], fpr)
  np.testing.assert_allclose(report["roc_curve"]["tpr"], tpr)
  assert report["accuracy"] == pytest.approx(sk.accuracy_score(targets, probability > 0.5))
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert report["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  with open(os.path.join(workdir, "evaluation", "test", "mistakes.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  wrong = int(np.sum((probability > 0.5) != targets))
  assert len(rows) == wrong > 0
  assert set(rows[0]) >= {"Sex", "Pclass", "Age", "true", "predicted", "probability"}
  confidences = [float(r["probability"]) for r in rows]
  assert confidences == sorted(confidences, reverse=True)  # Most confident mistakes first.
  assert os.path.exists(os.path.join(workdir, "evaluation", "test", "roc.png"))


def test_text_mistakes_list_the_sentences_with_class_names(finished_runs):
  workdir = finished_runs["text"]
  report = evaluate.evaluate_run(workdir, "test", figures=False)
  assert [c["name"] for c in report["per_class"]] == ["negative", "positive"]
  with open(os.path.join(workdir, "evaluation", "test", "mistakes.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert all(r["true"] in ("negative", "positive") and r["true"] != r["predicted"] for r in rows)
  assert all(len(r["input"].split()) >= 3 for r in rows)


def test_regression_report_equals_scikit_learn(finished_runs):
  workdir = finished_runs["linreg"]
  report = evaluate.evaluate_run(workdir, "test")
  _, values, targets = _outputs(workdir, "test")
  assert report["mse"] == pytest.approx(sk.mean_squared_error(targets, values), rel=1e-6)
  assert report["mae"] == pytest.approx(sk.mean_absolute_error(targets, values), rel=1e-6)
  assert report["r2"] == pytest.approx(sk.r2_score(targets, values), rel=1e-6)
  assert report["residual_quantiles"]["0.5"] == pytest.approx(np.median(targets - values))
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert report["mse"] == pytest.approx(summary["test_mse"], rel=1e-4)


def test_curves_and_average_precision_on_ties_match_scikit_learn():
  rng = np.random.default_rng(0)
  targets = rng.integers(0, 2, 300)
  scores = np.round(rng.random(300) * 0.5 + 0.5 * targets, 1)  # Many tied scores.
  assert analysis.average_precision(targets, scores) == pytest.approx(
      sk.average_precision_score(targets, scores))
  precision, recall, thresholds = analysis.precision_recall_curve(targets, scores)
  sk_precision, sk_recall, sk_thresholds = sk.precision_recall_curve(targets, scores)
  # scikit-learn lists the points from the lowest threshold up and adds (recall 0, precision 1).
  np.testing.assert_allclose(precision, sk_precision[:-1][::-1])
  np.testing.assert_allclose(recall, sk_recall[:-1][::-1])
  np.testing.assert_allclose(thresholds, sk_thresholds[::-1])


def test_the_command_prints_the_table_and_names_a_bad_workdir(finished_runs, tmp_path):
  run = lambda *a: subprocess.run([sys.executable, "-m", "jaxlearn.evaluate", *a],
                                  cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  result = run(f"--workdir={finished_runs['text']}")
  assert result.returncode == 0, result.stderr
  assert "precision    recall  f1-score   support" in result.stdout
  assert "    negative " in result.stdout and "weighted avg" in result.stdout
  missing = run(f"--workdir={tmp_path / 'nope'}")
  assert missing.returncode == 2
  assert "does not exist; pass the workdir of a finished training run" in missing.stderr
  assert "Traceback" not in missing.stderr
