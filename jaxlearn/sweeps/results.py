"""A sweep's results: one row per trial (results.csv, results.md), the metric against each varied
key (summary.png) and the validation curves overlaid (curves.png)."""

import csv
import io
import json
import math
import os

import numpy as np

from jaxlearn.runs import diagnosis
from jaxlearn.runs.workdir import RunDir

RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
SUMMARY_PNG, CURVES_PNG = "summary.png", "curves.png"


def trial_row(name: str, values: dict, workdir: str, monitor: str, failure: str = "") -> dict:
  """The trial's row: its varied values, best validation and test metrics, best epoch, seconds,
  and its status (finished / stopped early / pruned / failed / not run)."""
  row = {"trial": name, **values}
  summary_path = RunDir(workdir).summary
  if failure:
    first = failure.splitlines()[0].split(". ")[0].rstrip(".")  # failures.json keeps it whole
    return {**row, "status": f"failed: {first[:160]}"}
  if not os.path.exists(summary_path):
    return {**row, "status": "not run"}
  with open(summary_path, encoding="utf-8") as f:
    summary = json.load(f)
  metrics = {k: v for k, v in summary.items()
             if k.startswith(("best_val_", "test_")) and isinstance(v, (int, float))}
  reason = summary.get("stop_reason", "")
  status = "finished" if reason.startswith("completed") else reason.split(":")[0].split(" (")[0]
  best = next((h for h in summary.get("history", []) if h["epoch"] == summary.get("best_epoch")),
              {})
  return {**row, f"train_{monitor}": best.get(f"train_{monitor}"),
          f"best_val_{monitor}": metrics.pop(f"best_val_{monitor}", None), **metrics,
          "best_epoch": summary.get("best_epoch"), "epochs_run": summary.get("epochs_run"),
          "seconds": round(summary.get("train_seconds", 0.0), 2), "status": status,
          "diagnosis": findings(workdir)}


def findings(workdir: str) -> str:
  """The problems the run's diagnosis names (its diagnosis.json, else from its records)."""
  path = RunDir(workdir).diagnosis
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      names = [f["problem"] for f in json.load(f)["findings"]]
  else:  # A vectorised trial: the checks its records allow (no per-layer statistics).
    names = [f.problem for f in diagnosis.diagnose(diagnosis.read_records(workdir))]
  return " ".join(names) or "-"


def write_tables(directory: str, rows: list[dict], varied: list[str], monitor: str,
                 title: str = "", also: tuple = ()) -> None:
  """results.csv (every row) and results.md (`title`, the rows, then mean ± std over seeds);
  `also` names more test metrics for results.md to show (e.g. ("f1",))."""
  columns = list(dict.fromkeys(k for row in rows for k in row))
  with open(os.path.join(directory, RESULTS_CSV), "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  extra = [f"test_{m}" for m in also]
  shown = ["trial", *varied, f"train_{monitor}", f"best_val_{monitor}", f"test_{monitor}",
           *extra, "best_epoch", "seconds", "status", "diagnosis"]
  text = io.StringIO()
  if title:
    text.write(f"{title}\n\n")
  text.write(f"# Sweep results ({len(rows)} trials; best validation {monitor} of each trial's "
             "best checkpoint, and its test score; seconds of training, shared by the trials "
             "of one vectorised program)\n\n")
  text.write(_markdown(rows, [c for c in shown if c in columns]))
  if "seed" in varied and len(varied) > 1:
    text.write("\n## Over seeds (mean ± std, n = trials per setting)\n\n")
    text.write(_markdown(over_seeds(rows, [k for k in varied if k != "seed"], monitor, extra),
                         [k for k in varied if k != "seed"]
                         + [f"train_{monitor}", f"best_val_{monitor}", f"test_{monitor}",
                            *extra, "n"]))
  with open(os.path.join(directory, RESULTS_MD), "w", encoding="utf-8") as f:
    f.write(text.getvalue())


def over_seeds(rows: list[dict], keys: list[str], monitor: str, extra: list = ()) -> list[dict]:
  """One row per setting of `keys`: mean ± std of the finished trials' metrics over seeds."""
  settings = {}
  for row in rows:
    settings.setdefault(tuple(repr(row[k]) for k in keys), []).append(row)
  table = []
  for members in settings.values():
    row = {k: members[0][k] for k in keys}
    for metric in (f"train_{monitor}", f"best_val_{monitor}", f"test_{monitor}", *extra):
      values = [m[metric] for m in members if isinstance(m.get(metric), (int, float))]
      row[metric] = _mean_std(values)
    row["n"] = sum(isinstance(m.get(f"test_{monitor}"), (int, float)) for m in members)
    table.append(row)
  return table


def _mean_std(values: list[float]) -> str:
  if not values:
    return "-"
  mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return f"{mean:.4f} ± {std:.4f}"


def _markdown(rows: list[dict], columns: list[str]) -> str:
  cell = lambda v: ("-" if v is None else f"{v:.4g}" if isinstance(v, float) else
                    str(v).replace("|", "/"))
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def _label(value) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def write_figures(directory: str, rows: list[dict], varied: list[str], monitor: str,
                  workdirs: dict[str, str]) -> list[str]:
  """summary.png and curves.png; returns the files written ([] without matplotlib)."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
    return []
  metric = f"best_val_{monitor}"
  done = [r for r in rows if isinstance(r.get(metric), (int, float))]
  written = []
  panels = [k for k in varied if k != "seed"] or varied  # Seeds are the spread, not an axis.
  if done and panels:
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, key in zip(axes[0], panels):
      xs = [r[key] for r in done]
      numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
      positions = xs if numeric else [sorted(set(map(str, xs))).index(str(x)) for x in xs]
      ys = [r[metric] for r in done]
      others = [k for k in panels if k != key]
      # With one other key, a line per value of it: how the two interact (e.g. the best rate
      # of each batch size); else one line, the mean over everything else.
      lines = ([(f"{others[0]}={_label(v)}", [str(r[others[0]]) == str(v) for r in done])
                for v in dict.fromkeys(r[others[0]] for r in done)]
               if len(others) == 1 and len({str(r[others[0]]) for r in done}) <= 8 else
               [("mean over the other keys and seeds", [True] * len(done))])
      for label, chosen in lines:
        points = [(x, y) for x, y, c in zip(positions, ys, chosen) if c]
        dots = ax.scatter(*zip(*points), alpha=0.5, s=18)
        means = {}
        for x, y in points:
          means.setdefault(x, []).append(y)
        if any(len(v) > 1 for v in means.values()) or len(lines) > 1:
          xs_sorted = sorted(means)
          ax.plot(xs_sorted, [float(np.mean(means[x])) for x in xs_sorted], label=label,
                  color=dots.get_facecolor()[0][:3] if len(lines) > 1 else "black")
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
      if numeric and min(xs) > 0 and max(xs) / min(xs) >= 20:
        ax.set_xscale("log")
      if not numeric:
        labels = sorted(set(map(str, xs)))
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
      ax.set_xlabel(key)
      ax.set_ylabel(metric)
      ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(os.path.join(directory, SUMMARY_PNG), dpi=110)
    plt.close(figure)
    written.append(SUMMARY_PNG)
  curves = {}
  for row in done:
    with open(RunDir(workdirs[row["trial"]]).summary, encoding="utf-8") as f:
      history = json.load(f)["history"]
    curves[row["trial"]] = ([h["epoch"] for h in history],
                            [h.get(f"val_{monitor}", math.nan) for h in history])
  if curves:
    figure, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, (epochs, values) in curves.items():
      ax.plot(epochs, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"val {monitor}")
    ax.grid(alpha=0.3)
    if len(curves) <= 12:
      ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(directory, CURVES_PNG), dpi=110)
    plt.close(figure)
    written.append(CURVES_PNG)
  return written
