"""Error analysis of a model's predictions: the numbers of a classification report and more.

Pure NumPy over (targets, probabilities), so the figures can be checked
against any reference (the tests use scikit-learn's). Used by
`jaxlearn.evaluate`, which writes them to WORKDIR/evaluation/<split>/.
"""

import numpy as np

CALIBRATION_BINS = 15  # As in Guo et al. 2017, "On Calibration of Modern Neural Networks".
RESIDUAL_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted] (int64, num_classes x num_classes)."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (targets, predicted), 1)
  return counts


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
  """Precision, recall, F1 and support per class (0 where a ratio has no denominator)."""
  true_positives = np.diag(confusion).astype(np.float64)
  predicted = confusion.sum(axis=0)
  support = confusion.sum(axis=1)
  precision = _ratio(true_positives, predicted)
  recall = _ratio(true_positives, support)
  f1 = _ratio(2 * precision * recall, precision + recall)
  return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification_report(targets: np.ndarray, probabilities: np.ndarray,
                          class_names: list[str]) -> dict:
  """accuracy, top-5 accuracy, per-class and averaged P/R/F1, confusion matrix, ECE."""
  num_classes = probabilities.shape[1]
  predicted = probabilities.argmax(axis=1)
  confusion = confusion_matrix(targets, predicted, num_classes)
  scores = per_class_scores(confusion)
  support = scores["support"]
  report = {
      "num_examples": int(len(targets)),
      "accuracy": float(np.mean(predicted == targets)),
  }
  if num_classes > 5:
    top5 = np.argsort(-probabilities, axis=1, kind="stable")[:, :5]
    report["top5_accuracy"] = float(np.mean((top5 == targets[:, None]).any(axis=1)))
  report["per_class"] = [
      {"class": c, "name": class_names[c], **{k: float(scores[k][c]) for k in
                                              ("precision", "recall", "f1")},
       "support": int(support[c])} for c in range(num_classes)]
  for average, weights in (("macro_avg", np.ones(num_classes)), ("weighted_avg", support)):
    report[average] = {k: float(np.average(scores[k], weights=weights))
                       for k in ("precision", "recall", "f1")}
  report["confusion_matrix"] = confusion.tolist()
  report["expected_calibration_error"] = expected_calibration_error(
      probabilities.max(axis=1), predicted == targets)
  return report


def binary_report(targets: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict:
  """The classification report of p > 0.5, and ROC-AUC, average precision and both curves."""
  targets = targets.astype(np.int64)
  two_columns = np.stack([1 - probabilities, probabilities], axis=1)
  report = classification_report(targets, two_columns, class_names)
  report["expected_calibration_error"] = expected_calibration_error(probabilities, targets == 1)
  fpr, tpr, roc_thresholds = roc_curve(targets, probabilities)
  precision, recall, pr_thresholds = precision_recall_curve(targets, probabilities)
  report["roc_auc"] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # Trapezoids.
  report["average_precision"] = average_precision(targets, probabilities)
  report["roc_curve"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                         "thresholds": roc_thresholds.tolist()}
  report["precision_recall_curve"] = {"precision": precision.tolist(), "recall": recall.tolist(),
                                      "thresholds": pr_thresholds.tolist()}
  return report


def regression_report(targets: np.ndarray, values: np.ndarray) -> dict:
  """MSE, MAE, R^2 (over every target value) and quantiles of the residuals (target - value)."""
  targets = targets.reshape(values.shape).astype(np.float64)
  residuals = targets - values
  total = np.sum((targets - targets.mean(axis=0)) ** 2)
  return {
      "num_examples": int(len(targets)),
      "mse": float(np.mean(residuals ** 2)),
      "mae": float(np.mean(np.abs(residuals))),
      "r2": float(1.0 - np.sum(residuals ** 2) / total) if total > 0 else float("nan"),
      "residual_quantiles": {f"{q:g}": float(np.quantile(residuals, q))
                             for q in RESIDUAL_QUANTILES},
  }


def headline_score(task: str, targets: np.ndarray, outputs: np.ndarray) -> dict:
  """The one figure that compares models of a task: accuracy, or MSE for regression."""
  if task == "classification":
    return {"accuracy": float(np.mean(outputs.argmax(1) == targets))}
  if task == "binary":
    return {"accuracy": float(np.mean((outputs > 0.5) == (targets > 0.5)))}
  return {"mse": float(np.mean((outputs - targets.reshape(outputs.shape)) ** 2))}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
  """sum over equal-width confidence bins of |accuracy - mean confidence| x share of examples."""
  edges = np.linspace(0.0, 1.0, bins + 1)
  which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
  error = 0.0
  for b in range(bins):
    members = which == b
    if members.any():
      error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
  return float(error)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> dict[str, list]:
  """Per confidence bin: its centre, mean confidence, accuracy and count (for the diagram)."""
  edges = np.linspace(0.0, 1.0, bins + 1)
  which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
  rows = {"centre": [], "confidence": [], "accuracy": [], "count": []}
  for b in range(bins):
    members = which == b
    rows["centre"].append(float((edges[b] + edges[b + 1]) / 2))
    rows["count"].append(int(members.sum()))
    rows["confidence"].append(float(confidence[members].mean()) if members.any() else None)
    rows["accuracy"].append(float(correct[members].mean()) if members.any() else None)
  return rows


def roc_curve(targets: np.ndarray, scores: np.ndarray):
  """(false positive rates, true positive rates, thresholds), one point per distinct score."""
  false_positives, true_positives, thresholds = _cumulative_counts(targets, scores)
  fpr = np.concatenate([[0.0], false_positives / max(false_positives[-1], 1)])
  tpr = np.concatenate([[0.0], true_positives / max(true_positives[-1], 1)])
  return fpr, tpr, np.concatenate([[np.inf], thresholds])


def precision_recall_curve(targets: np.ndarray, scores: np.ndarray):
  """(precision, recall, thresholds) from the highest threshold down, ending at recall 1."""
  false_positives, true_positives, thresholds = _cumulative_counts(targets, scores)
  precision = true_positives / (true_positives + false_positives)
  recall = true_positives / max(true_positives[-1], 1)
  return precision, recall, thresholds


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
  """sum_n (R_n - R_{n-1}) P_n over the thresholds: the step-wise area under the PR curve."""
  precision, recall, _ = precision_recall_curve(targets, scores)
  return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def most_confident_mistakes(targets: np.ndarray, probabilities: np.ndarray,
                            limit: int) -> np.ndarray:
  """Indices of wrong predictions, most confident first (ties: lower index first)."""
  predicted = probabilities.argmax(axis=1)
  wrong = np.flatnonzero(predicted != targets)
  confidence = probabilities[wrong, predicted[wrong]]
  return wrong[np.argsort(-confidence, kind="stable")][:limit]


def _cumulative_counts(targets: np.ndarray, scores: np.ndarray):
  """Counts of false and true positives at each distinct score taken as the threshold."""
  order = np.argsort(-scores, kind="stable")
  scores, targets = scores[order], targets[order]
  last_of_each_score = np.flatnonzero(np.diff(scores)) if len(scores) > 1 else np.array([], int)
  ends = np.concatenate([last_of_each_score, [len(scores) - 1]])
  true_positives = np.cumsum(targets)[ends].astype(np.float64)
  false_positives = (ends + 1 - true_positives).astype(np.float64)
  return false_positives, true_positives, scores[ends]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
