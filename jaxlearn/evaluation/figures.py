"""The evaluation's figures (matplotlib, the plot extra): confusion, mistakes, calibration, ROC."""

import matplotlib

matplotlib.use("Agg")  # Files only; no display needed.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position


def confusion_matrix(path: str, counts: np.ndarray, names: list[str]) -> None:
  """Counts and row-normalised (recall per true class) side by side."""
  size = max(5.0, 0.45 * len(names) + 2)
  fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
  rows = counts.sum(axis=1, keepdims=True)
  normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
  for ax, values, title, fmt in ((axes[0], counts, "Counts", "d"),
                                 (axes[1], normalised, "Row-normalised (recall)", ".2f")):
    ax.imshow(values, cmap="Blues")
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if len(names) <= 20:
      high = values.max() / 2 if values.max() else 1
      for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                color="white" if value > high else "black")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def mistakes(path: str, images: np.ndarray, targets: np.ndarray, probabilities: np.ndarray,
             names: list[str]) -> None:
  """A grid of the most confident wrong predictions: true, predicted and its probability."""
  count = max(1, len(images))
  columns = min(6, count)
  rows = -(-count // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.3 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, image, target, row in zip(axes.flat, images, targets, probabilities):
    predicted = int(row.argmax())
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if
              image.shape[-1] == 1 else None, vmin=0, vmax=255)
    ax.set_title(f"true {names[target]}\npred {names[predicted]} {row[predicted]:.0%}",
                 fontsize=8)
  if not len(images):
    axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def reliability(path: str, bins: dict) -> None:
  """Accuracy against confidence per bin; the diagonal is perfect calibration."""
  fig, ax = plt.subplots(figsize=(5, 5))
  present = [i for i, c in enumerate(bins["count"]) if c]
  ax.bar([bins["centre"][i] for i in present], [bins["accuracy"][i] for i in present],
         width=1 / len(bins["centre"]), edgecolor="black", alpha=0.7, label="accuracy")
  ax.plot([0, 1], [0, 1], "k--", label="perfectly calibrated")
  ax.set_xlabel("confidence (top probability)")
  ax.set_ylabel("accuracy")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.legend(loc="upper left")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def roc(path: str, fpr: np.ndarray, tpr: np.ndarray, auc: float) -> None:
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.plot(fpr, tpr, label=f"ROC (AUC {auc:.4f})")
  ax.plot([0, 1], [0, 1], "k--", label="chance")
  ax.set_xlabel("false positive rate")
  ax.set_ylabel("true positive rate")
  ax.legend(loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
