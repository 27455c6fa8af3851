"""Evaluate a finished run and analyse its errors (`python -m jaxlearn.evaluate`).

Loads the run's best checkpoint, config.json and preprocessing.json, rebuilds
the split exactly as training cut it, and writes to W/evaluation/<split>/:
report.json (accuracy, top-5, per-class precision/recall/F1/support, macro
and weighted averages, the confusion matrix, expected calibration error; for
binary tasks ROC-AUC, average precision and both curves; for regression MSE,
MAE, R^2 and residual quantiles), the figures (confusion_matrix.png,
mistakes.png for images, reliability.png, roc.png), and mistakes.csv for text
and tables. The per-class table is printed too.
"""

import copy
import csv
import os

import numpy as np

from jaxlearn import data
from jaxlearn.data import pipeline, sources
from jaxlearn.errors import ConfigError
from jaxlearn.evaluation import analysis
from jaxlearn.runs import finished, inference, tracking, workdir as workdir_lib

SPLITS = workdir_lib.EVALUATED_SPLITS
MISTAKES_SHOWN = 36  # The grid in mistakes.png (6 x 6).
MISTAKES_LISTED = 200  # Rows of mistakes.csv.


def run_data(run: finished.Run, data_dir: str = ""):
  """(raw data, (train, val, test)) of a finished run, cut as its training cut them.

  The data is read from `data_dir`, else where the run read it (training
  records that folder in WORKDIR/config.json, so a new shell needs neither the
  flag nor $JAXLEARN_DATA_DIR), else as training looks for it.
  """
  data_config = copy.deepcopy(run.config.data)
  data_config.dir = data_dir or data_config.dir
  with sources.data_dir_flag("--data_dir"):  # The flag the after-training commands take.
    raw = data.load_raw(data_config, run.config.seed)
  return raw, pipeline.split_raw(raw, data_config, run.config.seed)


def split_inputs(run: finished.Run, split: str,
                 data_dir: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(raw inputs, stored inputs, targets) of `split`, cut as the training run cut it."""
  if split not in SPLITS:
    raise ConfigError(f"--split={split!r}; choose one of {SPLITS}.")
  raw, (_, val, test) = run_data(run, data_dir)
  inputs, targets = {"val": val, "test": test}[split]
  return inputs, pipeline.to_stored(raw.kind, run.preprocessing, inputs), targets


def predict_in_batches(predictor: inference.Predictor, stored: np.ndarray,
                       batch_size: int) -> np.ndarray:
  """The predictor's outputs over `stored`, a fixed-size batch at a time (one compile)."""
  outputs = []
  for start in range(0, len(stored), batch_size):
    batch = stored[start:start + batch_size]
    padded = np.concatenate([batch, np.zeros((batch_size - len(batch), *batch.shape[1:]),
                                             batch.dtype)])
    outputs.append(predictor.predict_stored(padded)[:len(batch)])
  return np.concatenate(outputs)


def make_report(task: str, targets: np.ndarray, outputs: np.ndarray, names: list[str]) -> dict:
  if task == "classification":
    return analysis.classification_report(targets.astype(np.int64), outputs, names)
  if task == "binary":
    return analysis.binary_report(targets.astype(np.int64), outputs, names)
  return analysis.regression_report(targets, outputs)


def evaluate_run(workdir: str, split: str = "test", batch_size: int = 0,
                 figures: bool = True, data_dir: str = "") -> dict:
  """Writes WORKDIR/evaluation/<split>/ (see the module docstring); returns the report.

  >>> import tempfile
  >>> from configs import linreg  # configs/linreg.py: y = x . (2, -3.4) + 4.2 + noise
  >>> from jaxlearn import train_and_evaluate
  >>> workdir = tempfile.mkdtemp()
  >>> _ = train_and_evaluate(linreg.get_config(), workdir)
  >>> report = evaluate_run(workdir)
  >>> report["num_examples"], bool(report["r2"] > 0.99), os.path.basename(report["files"][0])
  (100, True, 'report.json')
  """
  predictor = inference.load_predictor(workdir)
  run = predictor.run
  raw_inputs, stored, targets = split_inputs(run, split, data_dir)
  outputs = predict_in_batches(predictor, stored, batch_size or run.config.eval_batch_size)
  report = make_report(run.task, targets, outputs, predictor.class_names)
  report = {"split": split, "task": run.task, "workdir": os.path.abspath(workdir), **report}
  out_dir = workdir_lib.RunDir(workdir).evaluation(split)
  os.makedirs(out_dir, exist_ok=True)
  workdir_lib.write_json(os.path.join(out_dir, "report.json"), report, indent=1)
  written = ["report.json"]
  if run.task != "regression":
    if run.spec.kind != "image":
      _write_mistakes_csv(os.path.join(out_dir, "mistakes.csv"), raw_inputs, targets, outputs,
                          run, predictor.class_names)
      written.append("mistakes.csv")
    if figures:
      written += _figures(out_dir, run, report, stored, targets, outputs, predictor.class_names)
  report["files"] = [os.path.join(out_dir, name) for name in written]
  _to_wandb(run, report, split)
  return report


def _to_wandb(run: finished.Run, report: dict, split: str) -> None:
  """The report's figures and headline numbers into the run's W&B run, if it has one."""
  wandb = tracking.open_wandb(run.config, run.workdir)
  if wandb is None:
    return
  try:
    wandb.images(report["files"], f"evaluation_{split}")
    wandb.summarise({f"test_{k}" if split == "test" else f"best_val_{k}": v
                     for k, v in report.items() if isinstance(v, float)})
  finally:
    wandb.finish()


def format_report(report: dict) -> str:
  """The per-class table and the totals, as scikit-learn's classification_report lays them out."""
  if report["task"] == "regression":
    quantiles = ", ".join(f"{q}: {v:.4g}" for q, v in report["residual_quantiles"].items())
    return (f"{report['split']}: {report['num_examples']} examples; MSE {report['mse']:.4g}, "
            f"MAE {report['mae']:.4g}, R^2 {report['r2']:.4f}\nresidual quantiles: {quantiles}")
  width = max(12, *(len(c["name"]) for c in report["per_class"]))
  lines = [f"{'':>{width}}  precision    recall  f1-score   support", ""]
  for c in report["per_class"]:
    lines.append(f"{c['name']:>{width}}  {c['precision']:9.4f} {c['recall']:9.4f} "
                 f"{c['f1']:9.4f} {c['support']:9d}")
  total = report["num_examples"]
  lines += ["", f"{'accuracy':>{width}}  {'':9} {'':9} {report['accuracy']:9.4f} {total:9d}"]
  for name in ("macro_avg", "weighted_avg"):
    avg = report[name]
    lines.append(f"{name.replace('_', ' '):>{width}}  {avg['precision']:9.4f} "
                 f"{avg['recall']:9.4f} {avg['f1']:9.4f} {total:9d}")
  extra = [f"top-5 accuracy {report['top5_accuracy']:.4f}"] if "top5_accuracy" in report else []
  extra.append(f"expected calibration error {report['expected_calibration_error']:.4f}")
  if "roc_auc" in report:
    extra += [f"ROC-AUC {report['roc_auc']:.4f}",
              f"average precision {report['average_precision']:.4f}"]
  return "\n".join(lines + ["", "; ".join(extra)])


def _write_mistakes_csv(path, raw_inputs, targets, outputs, run, names) -> None:
  probabilities = _two_columns(outputs, run.task)
  order = analysis.most_confident_mistakes(targets.astype(np.int64), probabilities,
                                           MISTAKES_LISTED)
  predicted = probabilities.argmax(axis=1)
  columns = ([c["name"] for c in run.preprocessing["columns"]] if run.spec.kind == "table"
             else ["input"])
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["index", *columns, "true", "predicted", "probability"])
    for i in order:
      cells = list(raw_inputs[i]) if run.spec.kind == "table" else [_as_text(raw_inputs[i])]
      writer.writerow([int(i), *cells, names[int(targets[i])], names[int(predicted[i])],
                       f"{probabilities[i, predicted[i]]:.4f}"])


def _as_text(value) -> str:
  if isinstance(value, str):
    return value
  return " ".join(f"{v:.4g}" for v in np.ravel(value))


def _two_columns(outputs: np.ndarray, task: str) -> np.ndarray:
  return np.stack([1 - outputs, outputs], axis=1) if task == "binary" else outputs


def _figures(out_dir, run, report, stored, targets, outputs, names) -> list[str]:
  """The report's figures; the confusion matrix and ROC curve are the report's own numbers."""
  try:
    from jaxlearn.evaluation import figures  # pylint: disable=import-outside-toplevel
  except ImportError:  # matplotlib is the plot extra.
    print("Figures skipped: matplotlib is not installed (pip install 'jaxlearn[plot]').")
    return []
  probabilities = _two_columns(outputs, run.task)
  targets = targets.astype(np.int64)
  written = []
  figures.confusion_matrix(os.path.join(out_dir, "confusion_matrix.png"),
                           np.asarray(report["confusion_matrix"]), names)
  written.append("confusion_matrix.png")
  correct = probabilities.argmax(1) == targets
  figures.reliability(os.path.join(out_dir, "reliability.png"),
                      analysis.reliability_bins(probabilities.max(1), correct))
  written.append("reliability.png")
  if run.task == "binary":
    figures.roc(os.path.join(out_dir, "roc.png"), report["roc_curve"]["fpr"],
                report["roc_curve"]["tpr"], report["roc_auc"])
    written.append("roc.png")
  if run.spec.kind == "image":
    order = analysis.most_confident_mistakes(targets, probabilities, MISTAKES_SHOWN)
    figures.mistakes(os.path.join(out_dir, "mistakes.png"), stored[order], targets[order],
                     probabilities[order], names)
    written.append("mistakes.png")
  return written
