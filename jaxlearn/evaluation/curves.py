"""Training curves of a run: one panel per metric logged per epoch, train and validation together.

Needs matplotlib (`pip install 'jaxlearn[plot]'`); the command line is
`python -m jaxlearn.plot --workdir=DIR`.
"""


def epoch_curves(history: list[dict]) -> dict[str, dict[str, list[float]]]:
  """{metric: {"train": [...], "val": [...]}} per epoch, for metrics logged in both splits."""
  names = sorted({k[len("val_"):] for k in history[0] if k.startswith("val_")})
  return {name: {split: [h.get(f"{split}_{name}", float("nan")) for h in history]
                 for split in ("train", "val")} for name in names}


def plot_history(summary: dict, path: str):
  """Draws `summary["history"]` as one panel per metric and saves it to `path`."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel
  history = summary["history"]
  curves = epoch_curves(history)
  epochs = [h["epoch"] for h in history]
  figure, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False)
  for ax, (name, splits) in zip(axes[0], curves.items()):
    for split, values in splits.items():
      ax.plot(epochs, values, marker="o", label=split)
    ax.axvline(summary["best_epoch"], color="grey", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(name)
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  test = {k[len("test_"):]: v for k, v in summary.items() if k.startswith("test_")}
  model = summary.get("config", {}).get("model", {}).get("name", "")
  figure.suptitle(f"{model}: test " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(test.items())))
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return curves
