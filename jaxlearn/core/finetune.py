"""Fine-tuning: frozen parameters and per-parameter learning-rate multipliers.

Parameters are named by their path in the model, as checkpoints and logs name
them: `conv1/kernel`, `blocks/0/bn1/scale`, `head/bias`. Patterns are regular
expressions that must match a whole path:

  --config.freeze='conv.*'                          # conv1/*, conv2/*, conv3/*
  --config.optimizer.lr_multipliers='head/.*=1,.*=0.1'   # first matching pattern wins

A frozen parameter gets no update and keeps no optimizer state
(`optax.multi_transform` with `optax.set_to_zero`), and the running statistics of
a frozen layer (a batch norm whose scale and bias are frozen) stay as they were.
A pattern that matches nothing is an error listing the paths there are.
"""

import re

from absl import logging
import jax
import optax

from jaxlearn.core.paths import matches, parse_patterns, path_name, paths
from jaxlearn.errors import ConfigError

TRAINED, FROZEN = "trained", "frozen"


def parse_multipliers(text: str) -> list[tuple[str, float]]:
  """'head/.*=1, .*=0.1' -> [('head/.*', 1.0), ('.*', 0.1)]."""
  pairs = []
  for item in (i.strip() for i in text.split(",") if i.strip()):
    pattern, _, value = item.rpartition("=")
    try:
      multiplier = float(value)
      re.compile(pattern)
    except (ValueError, re.error) as e:
      raise ConfigError(f"config.optimizer.lr_multipliers: {item!r} must be PATTERN=NUMBER, e.g. "
                        "'head/.*=1,.*=0.1'.") from e
    if not pattern or multiplier < 0:
      raise ConfigError(f"config.optimizer.lr_multipliers: {item!r} must be PATTERN=NUMBER with a "
                        "number >= 0.")
    pairs.append((pattern, multiplier))
  return pairs


def check_patterns(patterns: list[str], names: list[str], key: str) -> None:
  """Fails, listing the parameter paths, when a pattern matches none of them."""
  for pattern in patterns:
    if not any(re.fullmatch(pattern, name) for name in names):
      raise ConfigError(f"{key}: {pattern!r} matches no parameter. The model's parameters are: "
                        f"{', '.join(names)}.")


def labels(params, freeze: list[str]):
  """The params tree with "frozen" where a freeze pattern matches the path, else "trained"."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: FROZEN if matches(path_name(path), freeze)
      else TRAINED, params)


def frozen_layers(params, freeze: list[str]) -> tuple[str, ...]:
  """Layers (path prefixes) all of whose parameters are frozen: their state stays fixed too."""
  layer_of = lambda name: name.rpartition("/")[0]
  status = {}
  for name in paths(params):
    frozen = matches(name, freeze)
    status[layer_of(name)] = status.get(layer_of(name), True) and frozen
  return tuple(sorted(layer for layer, frozen in status.items() if frozen))


def scale_by_path(multipliers: list[tuple[str, float]]) -> optax.GradientTransformation:
  """Multiplies each parameter's update by the first matching pattern's number (else 1)."""

  def factor(path) -> float:
    name = path_name(path)
    return next((m for p, m in multipliers if re.fullmatch(p, name)), 1.0)

  def update(updates, state, params=None):
    del params
    return jax.tree_util.tree_map_with_path(lambda path, u: u * factor(path), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def with_frozen(transform: optax.GradientTransformation,
                freeze: list[str]) -> optax.GradientTransformation:
  """`transform` on the trained parameters; zero updates and no state for the frozen ones."""
  if not freeze:
    return transform
  return optax.multi_transform({TRAINED: transform, FROZEN: optax.set_to_zero()},
                               lambda params: labels(params, freeze))


def keep_frozen_state(new_state, old_state, layers: tuple[str, ...]):
  """`new_state` (e.g. batch-norm statistics) with the frozen layers' entries left as they were."""
  if not layers:
    return new_state
  inside = lambda name: any(name == l or name.startswith(l + "/") for l in layers)
  return jax.tree_util.tree_map_with_path(
      lambda path, new, old: old if inside(path_name(path).rpartition("/")[0]) else new,
      new_state, old_state)


def check_and_log(config, params) -> tuple[str, ...]:
  """Checks that every pattern of config.freeze, optimizer.lr_multipliers and prune.params
  matches a parameter, logs the plan; returns the frozen layers (see `frozen_layers`)."""
  names = paths(params)
  freeze = parse_patterns(config.freeze)
  multipliers = parse_multipliers(config.optimizer.lr_multipliers)
  check_patterns(freeze, names, "config.freeze")
  check_patterns([p for p, _ in multipliers], names, "config.optimizer.lr_multipliers")
  if config.prune.sparsity > 0:
    check_patterns(parse_patterns(config.prune.params, "config.prune.params"), names,
                   "config.prune.params")
  log_plan(params, freeze, multipliers)
  return frozen_layers(params, freeze)


def log_plan(params, freeze: list[str], multipliers: list[tuple[str, float]]) -> None:
  """Says which parameters are frozen and which learning-rate multiplier each gets."""
  names = paths(params)
  frozen = [n for n in names if matches(n, freeze)]
  if frozen:
    logging.info("Frozen (%d of %d parameter arrays): %s.", len(frozen), len(names),
                 ", ".join(frozen))
  if multipliers:
    scaled = {n: next((m for p, m in multipliers if re.fullmatch(p, n)), 1.0) for n in names
              if n not in frozen}
    logging.info("Learning-rate multipliers: %s.", ", ".join(f"{n} x{m:g}"
                                                             for n, m in scaled.items()))
