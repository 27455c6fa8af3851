"""Images per second from a folder of image files: jaxlearn's Grain pipeline against PyTorch.

  python -m experiments.bench_input --data-dir=../shared/data [--workers=2] [--images=20000]

Writes a folder of PNG files (the first --images MNIST training digits, or
--size'd RGB JPEGs made from them with --format=jpg) once under --folder, then
times, side by side in one process each after one warm-up epoch:

- jaxlearn: `jaxlearn.data.streaming.Stream` over the folder (`image_folder`
  dataset): decoding and normalisation in --workers Grain worker processes,
  batches of --batch assembled on the device, then the training step's own
  augmentation (random crop with 4 pixels of padding, horizontal flip;
  `jaxlearn.data.augment`, on the device) applied and waited for.
- PyTorch: a `torch.utils.data.DataLoader` (same --workers, shuffle) over a
  torchvision-style ImageFolder dataset: PIL decode, random crop (padding 4) and
  horizontal flip, normalise, as tensors; waited for batch by batch.

Prints images/s of each and their ratio; writes experiments/results/bench_input_<date>.json.
"""

import argparse
import os
import time

import numpy as np

from experiments import results_file


def write_folder(data_dir: str, folder: str, images: int, fmt: str, size: int) -> None:
  """The first `images` MNIST training digits as ROOT/<digit>/<i>.<fmt> (once)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxlearn.data import idx  # pylint: disable=import-outside-toplevel
  done = os.path.join(folder, ".complete")
  if os.path.exists(done):
    return
  pixels = idx.read_idx(os.path.join(data_dir, "mnist", "train-images-idx3-ubyte.gz"),
                        idx.IMAGES_MAGIC)
  labels = idx.read_idx(os.path.join(data_dir, "mnist", "train-labels-idx1-ubyte.gz"),
                        idx.LABELS_MAGIC)
  for i in range(images):
    directory = os.path.join(folder, str(labels[i]))
    os.makedirs(directory, exist_ok=True)
    image = Image.fromarray(pixels[i])
    if fmt == "jpg":
      image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    image.save(os.path.join(directory, f"{i}.{fmt}"), quality=90)
  open(done, "w").close()


def jaxlearn_images_per_second(folder: str, batch: int, workers: int, epochs: int) -> float:
  import jax  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  from jaxlearn.core import parallel  # pylint: disable=import-outside-toplevel
  from jaxlearn.config import default_config  # pylint: disable=import-outside-toplevel
  from jaxlearn.data import augment, datasets, pipeline, streaming  # pylint: disable=import-outside-toplevel
  data_config = ml_collections.ConfigDict(default_config().data.to_dict())
  data_config.update(name="image_folder", path=folder, pipeline="grain", split_ratios="1:0:0")
  raw = datasets.load_raw(data_config)
  train, _, _ = pipeline.split_raw(raw, data_config, 0)
  mean, std = raw.train[0].channels * (0.5,), raw.train[0].channels * (0.25,)
  split = {"inputs": streaming.Normalised(train[0], mean, std), "targets": train[1]}
  steps = len(train[1]) // batch
  mesh = parallel.make_mesh()
  augment_config = default_config().augment
  augment_config.ops, augment_config.crop_padding = "random_crop,horizontal_flip", 4
  augment_fn = augment.make_augment(augment_config)
  crop_flip = jax.jit(lambda x, key: augment_fn(x[0], key))
  stream = streaming.Stream(split, batch_size=batch, seed=0, epochs=epochs + 1, workers=workers,
                            steps_per_call=1, sharding=parallel.stacked_batch_sharding(mesh))
  key = jax.random.key(0)
  for _ in range(steps):  # Warm-up epoch: starts the workers, compiles.
    crop_flip(stream.take(1)["inputs"], key).block_until_ready()
  started = time.perf_counter()
  for _ in range(epochs * steps):
    crop_flip(stream.take(1)["inputs"], key).block_until_ready()
  elapsed = time.perf_counter() - started
  stream.close()
  return epochs * steps * batch / elapsed


def torch_images_per_second(folder: str, batch: int, workers: int, epochs: int) -> float:
  import torch  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxlearn.data import folders  # pylint: disable=import-outside-toplevel

  paths, labels, _ = folders.list_classes(folder)

  class ImageFolder(torch.utils.data.Dataset):
    """torchvision.datasets.ImageFolder with RandomCrop(pad 4) + RandomHorizontalFlip."""

    def __len__(self):
      return len(paths)

    def __getitem__(self, i):
      with Image.open(paths[i]) as image:
        x = torch.from_numpy(np.asarray(image, np.uint8).copy()).float().div_(255.0)
      x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
      x = torch.nn.functional.pad(x, (4, 4, 4, 4))
      top, left = torch.randint(0, 9, (2,)).tolist()
      x = x[:, top:top + x.shape[1] - 8, left:left + x.shape[2] - 8]
      if torch.rand(()) < 0.5:
        x = x.flip(2)
      return (x - 0.5) / 0.25, int(labels[i])

  loader = torch.utils.data.DataLoader(ImageFolder(), batch_size=batch, shuffle=True,
                                       num_workers=workers, drop_last=True,
                                       persistent_workers=workers > 0)
  for _ in loader:  # Warm-up epoch: starts the workers.
    pass
  count, started = 0, time.perf_counter()
  for _ in range(epochs):
    for x, _ in loader:
      count += len(x)
  return count / (time.perf_counter() - started)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--folder", default="/tmp/jaxlearn_bench_input")
  parser.add_argument("--images", type=int, default=20000)
  parser.add_argument("--format", default="png", choices=("png", "jpg"))
  parser.add_argument("--size", type=int, default=64, help="JPEG side (--format=jpg)")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--epochs", type=int, default=2)
  args = parser.parse_args()
  folder = os.path.join(args.folder, f"{args.format}_{args.images}")
  write_folder(args.data_dir, folder, args.images, args.format, args.size)
  rows = {}
  for name, measure in (("jaxlearn_grain", jaxlearn_images_per_second),
                        ("pytorch_dataloader", torch_images_per_second)):
    rows[name] = measure(folder, args.batch, args.workers, args.epochs)
    print(f"{name:20s} {rows[name]:10.0f} images/s", flush=True)
  ratio = rows["jaxlearn_grain"] / rows["pytorch_dataloader"]
  print(f"jaxlearn / PyTorch: {ratio:.2f}x ({args.images} {args.format} files, batch "
        f"{args.batch}, {args.workers} workers)")
  results_file.write(f"bench_input_{args.format}", {**vars(args), "images_per_second": rows,
                                                    "ratio": ratio})


if __name__ == "__main__":
  main()
