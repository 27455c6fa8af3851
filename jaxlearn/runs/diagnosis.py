"""What went wrong in a run, read from its records, in plain sentences with the evidence.

The symptom tables of a deep-learning course, as checks over what a workdir
holds: summary.json (per-epoch history), metrics.jsonl (each logging window),
layer_stats.jsonl (per-layer gradients, updates and dead units, see
`jaxlearn.training.layer_stats`) and, when `evaluate` has run,
evaluation/test/report.json (per-class recall). Each finding names the
problem, the epochs and values that show it, and what to try. Training runs
the checks at its end (printing any finding, writing WORKDIR/diagnosis.json);
`python -m jaxlearn.diagnose` runs them on any workdir.
"""

import dataclasses
import json
import math
import os

import numpy as np

from jaxlearn.runs.workdir import RunDir, write_json

# Thresholds, each the edge of a symptom (on healthy runs the values sit far inside).
VANISHING = 1e-3  # gradient norm of the first layer / of the last
EXPLODING = 1e3
DEAD = 0.5  # fraction of the units feeding a layer that never fire
UPDATE_SPREAD = 100.0  # a layer's update/weight ratio against the median layer's
TOO_SLOW_RATIO = 1e-4  # update/weight ratio per step: healthy training is near 1e-3
# ... and well above it, steps large enough to knock ReLUs dead (units also die when the
# signal vanishes under a tiny initialisation, with small steps: not the rate's fault)
LARGE_STEP_RATIO = 2e-2
BARELY_MOVING = 0.1  # relative fall of the training loss over the whole run


@dataclasses.dataclass(frozen=True)
class Finding:
  problem: str  # e.g. "overfitting"
  evidence: str  # a sentence with the epochs and values
  remedy: str  # what to try

  def sentence(self) -> str:
    return f"{self.problem.replace('_', ' ').capitalize()}: {self.evidence} Try: {self.remedy}"


@dataclasses.dataclass
class Records:
  """What a workdir holds, read once (any part may be missing)."""
  config: dict
  summary: dict | None = None
  windows: list = dataclasses.field(default_factory=list)  # metrics.jsonl train lines
  layers: list = dataclasses.field(default_factory=list)  # layer_stats.jsonl, one per epoch
  report: dict | None = None  # evaluation/test/report.json
  class_counts: list | None = None  # training examples per class
  duplicates: tuple | None = None  # (test examples also in train, test examples)

  @property
  def history(self) -> list:
    return (self.summary or {}).get("history", [])


def read_records(workdir: str) -> Records:
  run_dir = RunDir(os.path.abspath(workdir))
  records = Records(config=_json(run_dir.config) or {}, summary=_json(run_dir.summary))
  if os.path.exists(run_dir.metrics):
    with open(run_dir.metrics, encoding="utf-8") as f:
      records.windows = [r for r in map(json.loads, filter(str.strip, f)) if r["split"] == "train"]
  if os.path.exists(run_dir.layer_stats):
    by_epoch = {}
    with open(run_dir.layer_stats, encoding="utf-8") as f:
      for record in map(json.loads, filter(str.strip, f)):
        by_epoch[record["epoch"]] = record  # a resumed epoch is written again: the last counts
    records.layers = [by_epoch[e] for e in sorted(by_epoch)]
  records.report = _json(os.path.join(run_dir.evaluation("test"), "report.json"))
  return records


def _json(path: str):
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def diagnose(records: Records) -> list[Finding]:
  """Every finding the records show, most fundamental first."""
  zero = _zero_weights(records)
  if zero:  # Nothing else can be read while no unit differs from another.
    return zero
  findings = []
  for check in (_diverged, _too_slow, _underfitting, _overfitting, _stopped_early,
                _trained_past_best, _imbalance, _perfect, _vanishing, _exploding, _dead_units,
                _uneven_updates):
    findings += check(records)
  return findings


def write(workdir: str, findings: list[Finding]) -> None:
  write_json(RunDir(workdir).diagnosis, {"findings": [dataclasses.asdict(f) for f in findings]})


def paragraph(findings: list[Finding]) -> str:
  return " ".join(f.sentence() for f in findings)


def class_counts(targets, task: str) -> list[int] | None:
  """Training examples per class, for a classifier's integer targets."""
  if task not in ("classification", "binary"):
    return None
  targets = np.asarray(targets).reshape(len(targets), -1)[:, 0].astype(np.int64)
  return np.bincount(targets).tolist()


def overlap(train_inputs, test_inputs) -> tuple[int, int]:
  """(test examples whose inputs are byte-for-byte in the training split, test examples)."""
  seen = {np.asarray(x).tobytes() for x in train_inputs}
  return sum(np.asarray(x).tobytes() in seen for x in test_inputs), len(test_inputs)


def _series(history: list, key: str) -> np.ndarray:
  return np.asarray([h.get(key, math.nan) for h in history], dtype=float)


def _fmt(x: float) -> str:
  return f"{x:.3g}"


def _diverged(r: Records) -> list[Finding]:
  stop = (r.summary or {}).get("stop_reason", "")
  nonfinite = [w["step"] for w in r.windows if w.get("nonfinite", 0) > 0
               or not math.isfinite(w.get("loss", 0.0))]
  loss = _series(r.history, "train_loss")
  rate = r.config.get("optimizer", {}).get("learning_rate")
  remedy = (f"a learning rate 3-10x lower than {rate:g} (python -m jaxlearn.lr_find suggests "
            "one), gradient clipping (config.optimizer.clip_norm=1.0), or warmup "
            "(config.schedule.warmup_epochs=1).")
  if stop.startswith("diverged"):
    return [Finding("learning_rate_too_high", f"the run stopped because it {stop}.", remedy)]
  if nonfinite:
    return [Finding("learning_rate_too_high", f"the loss or gradient was NaN/Inf in the "
                    f"logging window ending at step {nonfinite[0]} "
                    f"({len(nonfinite)} window(s) in all).", remedy)]
  stuck = _stuck_at_chance(r)
  if stuck:
    return [Finding("learning_rate_too_high", stuck, remedy)]
  finite = loss[np.isfinite(loss)]
  if len(finite) >= 3 and finite[-1] > 1.5 * finite.min():
    best = int(np.nanargmin(loss)) + 1
    return [Finding("learning_rate_too_high", f"the training loss rose from {_fmt(finite.min())} "
                    f"at epoch {best} to {_fmt(finite[-1])} at epoch {len(loss)}.", remedy)]
  return []


def _chance(r: Records) -> float | None:
  """The accuracy of always predicting the commonest training class."""
  if r.class_counts:
    return max(r.class_counts) / max(sum(r.class_counts), 1)
  if r.report and r.report.get("per_class"):
    support = [c["support"] for c in r.report["per_class"]]
    return max(support) / max(sum(support), 1)
  return None


def _stuck_at_chance(r: Records) -> str:
  """Why too large steps are the cause, when training accuracy ended at chance: the loss
  spiked first, or the ReLUs died (''if neither)."""
  chance, accuracy = _chance(r), _series(r.history, "train_accuracy")
  if chance is None or not len(accuracy) or not accuracy[-1] <= chance + 0.02:
    return ""
  windows = [w["loss"] for w in r.windows if math.isfinite(w.get("loss", math.nan))]
  final = _series(r.history, "train_loss")[-1]
  at_chance = (f"the training accuracy ended at {accuracy[-1]:.1%}, no better than always "
               f"predicting the commonest class ({chance:.1%}), with the loss at {_fmt(final)}")
  dead = _dead_units(r)
  if windows and max(windows) > 10 * final:
    first = int(np.argmax(windows))
    return (f"the loss spiked to {_fmt(max(windows))} in logging window {first + 1}; "
            f"{at_chance}" + (" and the ReLUs dead (below)." if dead else "."))
  ratio = _max_update_ratio(r)
  if dead and (ratio is None or ratio >= LARGE_STEP_RATIO):
    return f"{at_chance}, and the ReLUs have died (below): large steps pushed them off."
  return ""


def _overall_fall(r: Records) -> float | None:
  """How much the training loss fell over the run, relative to where it started."""
  losses = [w["loss"] for w in r.windows if math.isfinite(w.get("loss", math.nan))]
  if len(losses) < 2:
    return None
  return (losses[0] - losses[-1]) / max(abs(losses[0]), 1e-12)


def _max_update_ratio(r: Records) -> float | None:
  ratios = [s["update_ratio"] for e in r.layers for s in e["layers"].values()]
  return max(ratios) if ratios else None


def _too_slow(r: Records) -> list[Finding]:
  fall = _overall_fall(r)
  if fall is None or fall >= BARELY_MOVING or _diverged(r):
    return []
  losses = [w["loss"] for w in r.windows]
  ratio = _max_update_ratio(r)
  if ratio is not None and ratio >= TOO_SLOW_RATIO:
    return []  # The weights move: the problem is elsewhere (underfitting, say).
  moved = (f"; the largest update of any layer was {_fmt(ratio)} of its weights per step "
           "(healthy training is near 1e-3)" if ratio is not None else "")
  rate = r.config.get("optimizer", {}).get("learning_rate", 0.0)
  return [Finding("learning_rate_too_low",
                  f"the training loss barely moved, from {_fmt(losses[0])} to {_fmt(losses[-1])} "
                  f"({fall:.1%}) over {len(r.history) or '?'} epoch(s){moved}.",
                  f"a learning rate 10-100x higher than {rate:g} (python -m jaxlearn.lr_find "
                  "suggests one).")]


def _train_quality(r: Records) -> tuple[str, np.ndarray] | None:
  """('accuracy' or 'r2', the per-epoch training values), the task's measure of fit."""
  for key in ("accuracy", "r2"):
    values = _series(r.history, f"train_{key}")
    if len(values) and np.isfinite(values).any():
      return key, values
  return None


def _underfitting(r: Records) -> list[Finding]:
  quality = _train_quality(r)
  train, val = _series(r.history, "train_loss"), _series(r.history, "val_loss")
  if quality is None or len(train) < 3 or _too_slow(r) or _diverged(r):
    return []
  key, values = quality
  third = max(1, len(train) // 3)
  recent_fall = (train[-third - 1] - train[-1]) / max(abs(train[-third - 1]), 1e-12)
  if values[-1] >= 0.9 or recent_fall >= 0.02:
    return []
  gap = f", validation {_fmt(val[-1])}" if np.isfinite(val[-1]) else ""
  return [Finding("underfitting",
                  f"training {key} is only {values[-1]:.3g} after {len(train)} epochs and the "
                  f"training loss fell {recent_fall:.1%} over the last {third} (now "
                  f"{_fmt(train[-1])}{gap}): the model does not fit even the training data.",
                  "a larger model (more layers or units), more epochs, a higher learning rate, "
                  "or less regularisation (dropout, weight decay).")]


def _overfitting(r: Records) -> list[Finding]:
  train, val = _series(r.history, "train_loss"), _series(r.history, "val_loss")
  if len(val) < 3 or not np.isfinite(val).all() or not np.isfinite(train).all():
    return []
  b = int(np.argmin(val))
  if b == len(val) - 1 or val[-1] < 1.1 * val[b] or train[-1] >= train[b]:
    return []
  gap_then, gap_now = val[b] - train[b], val[-1] - train[-1]
  accuracy = _series(r.history, "train_accuracy"), _series(r.history, "val_accuracy")
  acc = (f" Training accuracy {accuracy[0][-1]:.1%} against validation {accuracy[1][-1]:.1%}."
         if np.isfinite(accuracy[0][-1]) and np.isfinite(accuracy[1][-1]) else "")
  return [Finding("overfitting",
                  f"the validation loss rose from {_fmt(val[b])} at epoch {b + 1} to "
                  f"{_fmt(val[-1])} at epoch {len(val)} while the training loss kept falling "
                  f"({_fmt(train[b])} to {_fmt(train[-1])}); the gap grew from {_fmt(gap_then)} "
                  f"to {_fmt(gap_now)}.{acc}",
                  "more training data or augmentation (config.augment.ops), dropout "
                  "(config.model.dropout), weight decay (config.optimizer.weight_decay), a "
                  "smaller model, or early stopping (config.early_stopping.patience=3; the best "
                  "checkpoint is already the one tested).")]


def _stopped_early(r: Records) -> list[Finding]:
  """Still improving at the end, with a rate that had not been annealed away."""
  val = _series(r.history, "val_loss")
  rates = np.asarray([w.get("learning_rate", math.nan) for w in r.windows], dtype=float)
  summary = r.summary or {}
  if len(val) < 2 or summary.get("best_epoch") != len(val) or not np.isfinite(val[-2:]).all():
    return []
  improvement = (val[-2] - val[-1]) / max(abs(val[-2]), 1e-12)
  # A schedule that annealed the rate away (one-cycle, cosine) has finished its descent.
  still_learning = len(rates) and np.isfinite(rates).all() and rates[-1] >= 0.1 * rates.max()
  if improvement < 0.05 or not still_learning:
    return []
  return [Finding("stopped_too_early",
                  f"the validation loss was still falling at the last epoch ({_fmt(val[-2])} to "
                  f"{_fmt(val[-1])}, {improvement:.1%}) with the learning rate still at "
                  f"{_fmt(rates[-1])} ({summary.get('stop_reason', '')}).",
                  "more epochs (config.num_epochs); rerunning the same command on this workdir "
                  "with a larger --config.num_epochs continues from here.")]


def _trained_past_best(r: Records) -> list[Finding]:
  summary = r.summary or {}
  best, ran = summary.get("best_epoch"), summary.get("epochs_run", len(r.history))
  patience = r.config.get("early_stopping", {}).get("patience", 0)
  if not best or not ran or patience or ran - best < max(5, ran // 2):
    return []
  return [Finding("trained_too_long",
                  f"the best validation epoch was {best} of {ran}: the last {ran - best} epochs "
                  "did not improve it (the best checkpoint is kept and tested).",
                  "early stopping (config.early_stopping.patience=5), or fewer epochs.")]


def _imbalance(r: Records) -> list[Finding]:
  findings = []
  per_class = (r.report or {}).get("per_class")
  if per_class:
    support = np.asarray([c["support"] for c in per_class], dtype=float)
    recall = np.asarray([c["recall"] for c in per_class], dtype=float)
    rare = int(np.argmin(support))
    if support.max() >= 5 * max(support.min(), 1) and recall[rare] < 0.5 * recall.max():
      c = per_class[rare]
      findings.append(Finding(
          "class_imbalance",
          f"class {c['name']!r} is {support[rare] / support.sum():.1%} of the test split "
          f"({int(support[rare])} examples) and its recall is {recall[rare]:.2f}, against "
          f"{recall.max():.2f} for the commonest class: the model mostly predicts the majority.",
          _IMBALANCE_REMEDY))
      return findings
  if r.class_counts and len(r.class_counts) >= 2:
    counts = np.asarray(r.class_counts, dtype=float)
    majority = counts.max() / counts.sum()
    val = _series(r.history, "val_accuracy")
    if majority >= 0.8 and len(val) and np.isfinite(val[-1]) and val.max() <= majority + 0.02:
      findings.append(Finding(
          "class_imbalance",
          f"{majority:.1%} of the training examples are of one class and the best validation "
          f"accuracy, {val.max():.1%}, is no better than always predicting it.",
          _IMBALANCE_REMEDY))
  return findings


_IMBALANCE_REMEDY = ("resample the training data so the classes are balanced, and monitor a "
                     "metric that sees the rare class (binary: config.monitor='roc_auc'); "
                     "python -m jaxlearn.evaluate shows each class's recall.")


def _perfect(r: Records) -> list[Finding]:
  summary = r.summary or {}
  score = summary.get("test_accuracy", summary.get("test_r2"))
  if score is None or score < 1.0 - 1e-9:
    return []
  if r.duplicates is not None and r.duplicates[0] == 0:
    return []
  seen = (f" {r.duplicates[0]} of the {r.duplicates[1]} test examples are also in the "
          "training split." if r.duplicates else "")
  return [Finding("suspiciously_perfect",
                  f"the test score is {score:.4g}, perfect.{seen} A perfect score on real data "
                  "usually means the test examples were seen in training.",
                  "check that no example is in both splits (duplicates, augmented copies, the "
                  "same source file), and that the targets are not among the inputs.")]


def _median_layers(r: Records, key: str) -> list[tuple[str, float]]:
  """(layer, median over epochs of `key`) in the model's call order."""
  if not r.layers:
    return []
  names = list(r.layers[0]["layers"])
  return [(n, float(np.median([e["layers"][n][key] for e in r.layers
                               if n in e["layers"] and key in e["layers"][n]])))
          for n in names if any(key in e["layers"].get(n, {}) for e in r.layers)]


def _zero_weights(r: Records) -> list[Finding]:
  """Layers whose weights are all zero and get no gradient: zero initialisation, whose
  symmetry no step can break (every unit of a layer computes the same thing)."""
  if not r.layers:
    return []
  last = r.layers[-1]["layers"]
  stuck = [n for n, s in last.items() if s.get("weight_norm", 1.0) == 0
           and s.get("grad_norm", 1.0) == 0]
  if not stuck:
    return []
  return [Finding("zero_weights",
                  f"{', '.join(stuck)} still have all-zero weights at epoch "
                  f"{r.layers[-1]['epoch']} and get exactly zero gradient: started at zero, "
                  "every unit of a layer computes the same output, so no step can make them "
                  "differ and the network cannot learn.",
                  "a random initialisation scaled to the layer (config.init.linear="
                  "'kaiming_normal' for ReLU, 'xavier_normal' for tanh, or 'default').")]


def _vanishing(r: Records) -> list[Finding]:
  norms = _median_layers(r, "grad_norm")
  if len(norms) < 3 or norms[-1][1] <= 0 or _dead_units(r):  # Dead units pass no gradient.
    return []
  (first, g0), (last, g1) = norms[0], norms[-1]
  if g0 / g1 >= VANISHING:
    return []
  chain = ", ".join(f"{n} {_fmt(g)}" for n, g in norms)
  return [Finding("vanishing_gradients",
                  f"the gradient norm shrinks towards the input: {first}'s is {g0 / g1:.2g} of "
                  f"{last}'s (median over epochs: {chain}).",
                  "ReLU or GELU instead of sigmoid/tanh (config.model.activation), batch norm "
                  "(config.model.batch_norm), residual connections, He/Xavier initialisation "
                  "(config.init), or fewer layers.")]


def _exploding(r: Records) -> list[Finding]:
  norms = _median_layers(r, "grad_norm")
  grad = _series(r.history, "train_grad_norm")
  findings = []
  if len(norms) >= 3 and norms[-1][1] > 0 and norms[0][1] / norms[-1][1] > EXPLODING:
    findings.append(Finding("exploding_gradients",
                            f"the gradient norm grows towards the input: {norms[0][0]}'s is "
                            f"{norms[0][1] / norms[-1][1]:.2g} times {norms[-1][0]}'s.",
                            _EXPLODING_REMEDY))
  elif len(grad) >= 2 and np.isfinite(grad).all() and grad[0] > 0 and grad.max() > 100 * grad[0]:
    peak = int(np.argmax(grad))
    findings.append(Finding("exploding_gradients",
                            f"the gradient norm grew from {_fmt(grad[0])} in epoch 1 to "
                            f"{_fmt(grad[peak])} in epoch {peak + 1}.", _EXPLODING_REMEDY))
  return findings


_EXPLODING_REMEDY = ("gradient clipping (config.optimizer.clip_norm=1.0), a lower learning "
                     "rate, batch or layer norm, or a smaller initialisation.")


def _dead_units(r: Records) -> list[Finding]:
  if not r.layers:
    return []
  last = r.layers[-1]["layers"]
  dead = [(n, s["dead_fraction"]) for n, s in last.items() if s.get("dead_fraction", 0) >= DEAD]
  if not dead:
    return []
  listed = ", ".join(f"{f:.0%} of the units feeding {n}" for n, f in dead)
  return [Finding("dead_relus",
                  f"{listed} output exactly zero for every example of a training batch at "
                  f"epoch {r.layers[-1]['epoch']}: those ReLUs never fire, so they no longer "
                  "learn.",
                  "a lower learning rate, He initialisation, batch norm before the ReLU, or a "
                  "leaky activation (GELU, config.model.activation='gelu' for the MLP).")]


def _uneven_updates(r: Records) -> list[Finding]:
  epochs = [e for e in r.layers
            if np.median([s["update_ratio"] for s in e["layers"].values()]) > 0]
  if not epochs:
    return []
  first = epochs[0]  # while the rate is high enough to show each layer's pace
  ratios = {n: s["update_ratio"] for n, s in first["layers"].items()}
  if len(ratios) < 3:
    return []
  median = float(np.median(list(ratios.values())))
  odd = [(n, v) for n, v in ratios.items()
         if v > UPDATE_SPREAD * median or v < median / UPDATE_SPREAD]
  if not odd:
    return []
  listed = ", ".join(f"{n}'s {_fmt(v)} ({v / median:.2g}x)" for n, v in odd)
  return [Finding("uneven_layer_updates",
                  f"at epoch {first['epoch']} each step changed the weights by a median "
                  f"{_fmt(median)} of their size, but {listed}.",
                  "per-layer learning rates (config.optimizer.lr_multipliers), normalisation "
                  "layers, or an adaptive optimizer (Adam).")]
