"""A plain PyTorch eager LeNet-5 loop on MNIST that stops at a test accuracy: the peer of
`python -m jaxlearn.main --config=configs/mnist_lenet.py` in e2e_vs_pytorch.py.

  python experiments/pytorch_lenet_mnist.py --data-dir ../shared/data --target 0.99

Written the way a tutorial writes it, with SGD (momentum 0.9) at batch 128 and
lr 0.05 (a faster recipe to 99% than the common batch 32 / lr 0.001), and no
jaxlearn code: it reads MNIST's IDX files itself and normalises with MNIST's
usual mean and standard deviation. After each epoch it tests on
the 10,000 test images and stops once `--target` is reached; the last line it
prints is JSON with the accuracy per epoch, the epoch's training seconds and the
seconds since start-up. Runs on CUDA when PyTorch sees a GPU (`--device`).
"""

import argparse
import gzip
import json
import os
import time

STARTED = time.time()

import numpy as np  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
from torch import nn  # pylint: disable=wrong-import-position


def read_idx(path: str) -> np.ndarray:
  with gzip.open(path, "rb") as f:
    raw = f.read()
  ndim = raw[3]
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(data_dir: str, split: str):
  folder = os.path.join(data_dir, "mnist")
  images = read_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"))
  labels = read_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"))
  x = (torch.from_numpy(images.astype(np.float32) / 255.0) - 0.1307) / 0.3081
  return x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def lenet5() -> nn.Module:
  return nn.Sequential(
      nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
      nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
      nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--target", type=float, default=0.99)
  parser.add_argument("--max-epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--lr", type=float, default=0.05)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  args = parser.parse_args()
  torch.manual_seed(args.seed)
  device = torch.device(args.device)
  x_train, y_train = (t.to(device) for t in load(args.data_dir, "train"))
  x_test, y_test = (t.to(device) for t in load(args.data_dir, "t10k"))
  model = lenet5().to(device)
  optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
  history = []
  for epoch in range(1, args.max_epochs + 1):
    model.train()
    epoch_started = time.time()
    order = torch.randperm(len(y_train), device=device)
    for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
      idx = order[i:i + args.batch_size]
      optimizer.zero_grad()
      loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
      loss.backward()
      optimizer.step()
    if device.type == "cuda":
      torch.cuda.synchronize()
    train_seconds = time.time() - epoch_started
    model.eval()
    with torch.no_grad():
      correct = sum(int((model(x_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum())
                    for i in range(0, len(y_test), 1000))
    accuracy = correct / len(y_test)
    history.append({"epoch": epoch, "test_accuracy": accuracy, "train_seconds": train_seconds,
                    "seconds": time.time() - STARTED})
    print(f"epoch {epoch}: test accuracy {accuracy:.4f} at {time.time() - STARTED:.1f}s",
          flush=True)
    if accuracy >= args.target:
      break
  print(json.dumps({"reached": history[-1]["test_accuracy"] >= args.target,
                    "seconds": time.time() - STARTED, "history": history,
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}))


if __name__ == "__main__":
  main()
