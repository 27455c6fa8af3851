"""LeNet-5 on MNIST read from 70,000 PNG files or ArrayRecord files: Grain against memory.

  python -m experiments.stream_mnist_files --data-dir=../shared/data [--workdir=DIR]

Writes MNIST as an image folder once (ROOT/train/<digit>/<i>.png, ROOT/test/...),
and as ArrayRecord files (python -m jaxlearn.data.records), then trains
configs/mnist_lenet.py three times: `data.pipeline=grain` on the PNG files
(decoded by 2 worker processes while the devices train), `grain` on the
ArrayRecord files (read by index, nothing to decode), and `memory` (every PNG
decoded up front): test accuracy, training time, and the share of each logging
window a grain run waited for input (`input_wait`; the first window includes
starting the workers and compiling). Writes experiments/results/stream_mnist_files_<date>.json.
"""

import argparse
import json
import os
import tempfile
import time

from configs import mnist_lenet
from experiments import results_file
from jaxlearn.data import array_record as records, datasets
from jaxlearn.training import train

def write_mnist_folder(data_dir: str, root: str) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxlearn.data import idx  # pylint: disable=import-outside-toplevel
  if os.path.exists(os.path.join(root, ".complete")):
    return
  for split, prefix in (("train", "train"), ("test", "t10k")):
    pixels = idx.read_idx(os.path.join(data_dir, "mnist", f"{prefix}-images-idx3-ubyte.gz"),
                          idx.IMAGES_MAGIC)
    labels = idx.read_idx(os.path.join(data_dir, "mnist", f"{prefix}-labels-idx1-ubyte.gz"),
                          idx.LABELS_MAGIC)
    for i, (image, label) in enumerate(zip(pixels, labels)):
      directory = os.path.join(root, split, str(label))
      os.makedirs(directory, exist_ok=True)
      Image.fromarray(image).save(os.path.join(directory, f"{i:05d}.png"))
  open(os.path.join(root, ".complete"), "w").close()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--folder", default="/tmp/jaxlearn_mnist_png")
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  write_mnist_folder(args.data_dir, args.folder)
  root = args.workdir or tempfile.mkdtemp(prefix="stream_mnist_")
  records_dir = args.folder.rstrip("/") + "_records"
  if not os.path.exists(records_dir):
    config = mnist_lenet.get_config()
    config.data.dir = args.data_dir
    records.write(datasets.load_raw(config.data), records_dir)
  rows = []
  runs = (("grain", "image_folder", args.folder), ("grain", "array_record", records_dir),
          ("memory", "image_folder", args.folder))
  for pipeline, name, path in runs:
    config = mnist_lenet.get_config()
    config.data.name, config.data.path, config.data.pipeline = name, path, pipeline
    config.progress_bar = False
    workdir = os.path.join(root, f"{pipeline}_{name}")
    started = time.time()
    summary = train.train_and_evaluate(config, workdir)
    waits = [json.loads(line).get("input_wait") for line in open(
        os.path.join(workdir, "metrics.jsonl")) if '"train"' in line]
    rows.append({"pipeline": pipeline, "source": name, "test_accuracy": summary["test_accuracy"],
                 "train_seconds": summary["train_seconds"], "wall_seconds": time.time() - started,
                 "input_wait_first_window": waits[0],
                 "input_wait_after": max(waits[1:]) if waits[0] is not None else None})
    print(json.dumps(rows[-1]), flush=True)
  results_file.write("stream_mnist_files", {"rows": rows})


if __name__ == "__main__":
  main()
