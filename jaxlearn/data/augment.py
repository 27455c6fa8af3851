"""Image augmentation as pure JAX functions of (image, key), run inside the compiled step.

Each op takes one normalised (H, W, C) image and a PRNG key; `make_augment`
chains the ops named in `config.augment.ops` and vmaps them over the batch, so
augmentation runs on the accelerator with a fresh key per step and example.
Pixels moved in from outside the image are 0, the dataset's mean colour after
normalisation.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from jaxlearn.errors import ConfigError


def random_crop(image, key, *, padding: int):
  """Pads by `padding` on every side and crops back to the original size at a random place."""
  height, width, _ = image.shape
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  top, left = jax.random.randint(key, (2,), 0, 2 * padding + 1)
  return jax.lax.dynamic_slice(padded, (top, left, 0), image.shape)


def horizontal_flip(image, key):
  """Mirrors left-right with probability 1/2."""
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def rotation(image, key, *, max_degrees: float):
  """Rotates about the centre by an angle uniform in +-max_degrees (bilinear)."""
  angle = jnp.deg2rad(jax.random.uniform(key, (), minval=-max_degrees, maxval=max_degrees))
  return _warp(image, angle, jnp.zeros(2))


def translation(image, key, *, max_pixels: float):
  """Shifts by an offset uniform in +-max_pixels along each axis (bilinear)."""
  return _warp(image, 0.0, jax.random.uniform(key, (2,), minval=-max_pixels, maxval=max_pixels))


def gaussian_noise(image, key, *, std: float):
  """Adds N(0, std^2) noise to every pixel."""
  return image + std * jax.random.normal(key, image.shape, image.dtype)


def random_erasing(image, key, *, probability: float, max_area: float):
  """With `probability`, sets a random rectangle (2% to max_area of the image) to 0."""
  height, width, _ = image.shape
  apply_key, area_key, ratio_key, place_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, minval=0.02, maxval=max_area) * height * width
  log_ratio = jax.random.uniform(ratio_key, minval=jnp.log(0.3), maxval=jnp.log(3.3))
  box_h = jnp.clip(jnp.round(jnp.sqrt(area * jnp.exp(log_ratio))), 1, height)
  box_w = jnp.clip(jnp.round(jnp.sqrt(area / jnp.exp(log_ratio))), 1, width)
  top = jax.random.uniform(place_key) * (height - box_h + 1)
  left = jax.random.uniform(jax.random.fold_in(place_key, 1)) * (width - box_w + 1)
  rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
  inside = ((rows >= jnp.floor(top)) & (rows < jnp.floor(top) + box_h)
            & (cols >= jnp.floor(left)) & (cols < jnp.floor(left) + box_w))
  erase = inside[..., None] & jax.random.bernoulli(apply_key, probability)
  return jnp.where(erase, 0.0, image)


def _warp(image, angle, shift):
  """Samples image at the rotated (about the centre) and shifted grid, 0 outside."""
  height, width, _ = image.shape
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing="ij")
  centre_r, centre_c = (height - 1) / 2, (width - 1) / 2
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # Output pixel (r, c) reads input at the inverse transform of (r, c).
  r, c = rows - centre_r - shift[0], cols - centre_c - shift[1]
  source_r = cos * r - sin * c + centre_r
  source_c = sin * r + cos * c + centre_c
  sample = lambda channel: jax.scipy.ndimage.map_coordinates(
      channel, (source_r, source_c), order=1, mode="constant", cval=0.0)
  return jnp.stack([sample(image[..., k]) for k in range(image.shape[-1])], axis=-1)


def ops_for(augment_config) -> dict[str, Callable]:
  """Every op by name, bound to its settings in config.augment."""
  return {
      "random_crop": functools.partial(random_crop, padding=augment_config.crop_padding),
      "horizontal_flip": horizontal_flip,
      "rotation": functools.partial(rotation, max_degrees=augment_config.max_rotation_degrees),
      "translation": functools.partial(translation, max_pixels=augment_config.max_translation),
      "gaussian_noise": functools.partial(gaussian_noise, std=augment_config.noise_std),
      "random_erasing": functools.partial(random_erasing, probability=augment_config.erase_prob,
                                          max_area=augment_config.erase_max_area),
  }


def make_augment(augment_config) -> Callable | None:
  """`augment(images, key) -> images` for a batch, chaining config.augment.ops; None if none."""
  names = [n.strip() for n in augment_config.ops.split(",") if n.strip()]
  if not names:
    return None
  ops = ops_for(augment_config)
  unknown = [n for n in names if n not in ops]
  if unknown:
    raise ConfigError(f"Unknown augmentation {unknown} in config.augment.ops; choose from "
                      f"{sorted(ops)}, comma-separated.")
  chain = [ops[n] for n in names]

  def augment_one(image, key):
    for i, op in enumerate(chain):
      image = op(image, jax.random.fold_in(key, i))
    return image

  def augment(images, key):
    if images.ndim != 4:
      raise ConfigError(f"config.augment.ops={augment_config.ops!r} needs image batches "
                        f"(N, H, W, C), but the inputs are shaped {images.shape}; clear "
                        "config.augment.ops for this dataset.")
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(augment_one)(images, keys)

  return augment
