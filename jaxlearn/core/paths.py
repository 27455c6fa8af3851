"""Parameters named by their path, and the patterns over those names.

Checkpoints, logs, fine-tuning, pruning and quantization all name a
parameter the same way: 'conv1/kernel', 'blocks/0/bn1/scale', 'head/bias'. A
pattern (`config.freeze`, `config.optimizer.lr_multipliers`,
`config.prune.params`, `config.init.from_checkpoint_include`) is a regular
expression that must match a whole name.
"""

import re

import jax

from jaxlearn.errors import ConfigError


def path_name(path) -> str:
  """'conv1/kernel' for a pytree key path."""
  parts = []
  for key in path:
    parts.append(next((str(getattr(key, attr)) for attr in ("key", "name", "idx")
                       if hasattr(key, attr)), str(key)))
  return "/".join(parts)


def paths(tree) -> list[str]:
  """The name of every leaf of `tree`, in its flattening order."""
  return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def parse_patterns(text: str, key: str = "config.freeze") -> list[str]:
  """'a.*, b.*' -> ['a.*', 'b.*'] (compiled once to report a bad expression early).

  >>> parse_patterns("conv.*, head/bias")
  ['conv.*', 'head/bias']
  """
  patterns = [p.strip() for p in text.split(",") if p.strip()]
  for pattern in patterns:
    try:
      re.compile(pattern)
    except re.error as e:
      raise ConfigError(f"{key}: {pattern!r} is not a regular expression ({e}).") from e
  return patterns


def matches(name: str, patterns) -> bool:
  """Whether any of `patterns` matches the whole of `name`.

  >>> matches("conv1/kernel", ["conv.*"]), matches("head/kernel", ["conv.*"])
  (True, False)
  """
  return any(re.fullmatch(p, name) for p in patterns)
