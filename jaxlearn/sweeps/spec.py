"""What a sweep varies: `--grid KEY=V1,V2` and `--random KEY=loguniform(a,b)`, checked against
the config before any trial starts, and the trials they expand to.

Every value is converted to the type of the config field it sets (as
`--config.KEY=V` would be), and every trial's config is validated, so a typo,
a wrong type or a value out of range is one message naming the flag.
"""

import copy
import difflib
import itertools
import math
import re
from typing import NamedTuple

from jaxlearn import config as config_lib
from jaxlearn.errors import ConfigError

# Fields that do not change what is trained: a sweep over them would train one trial many times.
NOT_VARIED = ("progress_bar", "log_every_steps", "compilation_cache_dir", "data.dir",
              "data.mirror", "data.tfds_data_dir", "steps_per_call", "cpu_kernels")

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


class Distribution(NamedTuple):
  """`--random KEY=kind(args)`: loguniform(low, high), uniform(low, high), int(low, high),
  choice(a, b, ...)."""
  kind: str
  args: tuple


class Trial(NamedTuple):
  name: str  # its folder in the sweep's workdir
  values: dict  # {dotted key: value} of the varied fields
  config: object


# Short names people type for a field, e.g. --grid optimizer.lr=...
ALIASES = {"lr": "learning_rate", "wd": "weight_decay", "epochs": "num_epochs",
           "bs": "batch_size"}


def close_fields(key: str) -> list[str]:
  """Config fields the user may have meant by `key` (aliases, prefixes, then near spellings)."""
  known = sorted(config_lib.rules())
  group, _, last = key.rpartition(".")
  alias = ".".join(filter(None, (group, ALIASES.get(last, ""))))
  found = [alias] if alias in known else []
  found += [k for k in known if k.startswith(key) and k not in found]
  found += [k for k in difflib.get_close_matches(key, known, n=3, cutoff=0.75) if k not in found]
  return found[:3]


def field_type(config, key: str, flag: str):
  """The Python type of config field `key`, or a ConfigError naming `flag`."""
  node, parts = config, key.split(".")
  for depth, part in enumerate(parts):
    if not hasattr(node, "keys") or part not in node.keys():
      close = close_fields(key)
      hint = f" (did you mean {' or '.join(close)}?)" if close else ""
      raise ConfigError(f"{flag}: the config has no field {key!r}{hint}; a sweep varies "
                        "fields of config (see python -m jaxlearn.main --helpfull, or "
                        "jaxlearn/config.py).")
    if depth < len(parts) - 1:
      node = node[part]
  if hasattr(node[parts[-1]], "keys"):
    raise ConfigError(f"{flag}: config.{key} is a group of fields, not one; vary one of "
                      f"{sorted(f'{key}.{k}' for k in node[parts[-1]].keys())}.")
  if key in NOT_VARIED:
    raise ConfigError(f"{flag}: config.{key} does not change what is trained, so a sweep over "
                      "it would train the same trial several times; vary a field of the model, "
                      "data, optimizer or training instead.")
  value = node[parts[-1]]
  if value is None:  # An unset optional field (e.g. optimizer.momentum) holds a float.
    return float
  return type(value)


def convert(text: str, kind: type, key: str, flag: str):
  """`text` as a value of config.`key`'s type."""
  text = text.strip()
  try:
    if kind is bool:
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError
      return text.lower() in ("true", "1")
    if kind is int:
      number = float(text)
      if number != int(number):
        raise ValueError
      return int(number)
    if kind is float:
      return float(text)
    if kind is tuple:
      return tuple(float(v) if re.fullmatch(r"[-+.\deE]+", v) else v
                   for v in text.strip("()").split(":") if v)
    return text
  except ValueError:
    raise ConfigError(f"{flag}: {text!r} is not a {kind.__name__}, the type of config.{key}."
                      ) from None


def parse_grid(spec: str, config) -> tuple[str, list]:
  """'KEY=V1,V2,...' -> (KEY, [typed values])."""
  flag = f"--grid {spec}"
  key, sep, values = spec.partition("=")
  key = key.strip()
  if not sep or not key:
    raise ConfigError(f"{flag}: write KEY=V1,V2,... (e.g. --grid optimizer.learning_rate="
                      "0.001,0.01).")
  kind = field_type(config, key, flag)
  texts = [v for v in values.split(",") if v.strip()]
  if not texts:
    raise ConfigError(f"{flag}: no values; give at least one after '=' (KEY=V1,V2,...).")
  typed = [convert(v, kind, key, flag) for v in texts]
  if len(set(map(repr, typed))) != len(typed):
    raise ConfigError(f"{flag}: a value is given twice; each trial must differ.")
  return key, typed


def parse_random(spec: str, config) -> tuple[str, Distribution]:
  """'KEY=loguniform(1e-4,1e-1)' -> (KEY, Distribution)."""
  flag = f"--random {spec}"
  key, sep, text = spec.partition("=")
  key = key.strip()
  match = re.fullmatch(r"\s*(\w+)\((.*)\)\s*", text)
  if not sep or not match or match.group(1) not in DISTRIBUTIONS:
    raise ConfigError(f"{flag}: write KEY=DIST(ARGS) with DIST one of {DISTRIBUTIONS}, e.g. "
                      "optimizer.learning_rate=loguniform(1e-4,1e-1).")
  kind_name, args = match.group(1), [a for a in match.group(2).split(",") if a.strip()]
  kind = field_type(config, key, flag)
  if kind_name == "choice":
    if not args:
      raise ConfigError(f"{flag}: choice() needs at least one value.")
    return key, Distribution("choice", tuple(convert(a, kind, key, flag) for a in args))
  if len(args) != 2:
    raise ConfigError(f"{flag}: {kind_name}(low, high) takes two numbers.")
  number = int if kind_name == "int" else float
  low, high = (convert(a, number, key, flag) for a in args)
  if not low < high or (kind_name == "loguniform" and low <= 0):
    raise ConfigError(f"{flag}: needs low < high" + (" and low > 0" if kind_name == "loguniform"
                                                     else "") + f"; got {low}, {high}.")
  if kind_name == "int" and kind is not int or kind_name != "int" and kind not in (float, int):
    raise ConfigError(f"{flag}: config.{key} holds a {kind.__name__}; use "
                      + ("int(low, high)" if kind is int else "choice(a, b, ...)") + ".")
  return key, Distribution(kind_name, (low, high))


def _format(value) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, tuple):
    return ":".join(_format(v) for v in value)
  return str(value)


def trial_name(values: dict) -> str:
  """A folder name from the varied values: 'learning_rate=0.001,seed=0'."""
  short = [k.rsplit(".", 1)[-1] for k in values]
  names = [s if short.count(s) == 1 else k for s, k in zip(short, values)]
  text = ",".join(f"{n}={_format(v)}" for n, v in zip(names, values.values()))
  return re.sub(r"[^\w.=,:+-]", "_", text)


def with_values(config, values: dict):
  """A copy of `config` with the dotted `values` set (the config stays locked)."""
  config = copy.deepcopy(config)
  for key, value in values.items():
    node, parts = config, key.split(".")
    for part in parts[:-1]:
      node = node[part]
    node[parts[-1]] = value
  return config


def grid_trials(config, grid: dict[str, list], seeds: list[int] | None = None) -> list[Trial]:
  """Every combination of the grid (then of the seeds), each a validated config."""
  if not grid and not seeds:
    raise ConfigError("Nothing to sweep: give --grid KEY=V1,V2,... (or --random KEY=DIST(...) "
                      "with --trials N), and optionally --seeds 0,1,2.")
  axes = dict(grid)
  if seeds:
    if "seed" in axes:
      raise ConfigError("Give the seeds once: --seeds, or --grid seed=..., not both.")
    axes["seed"] = list(seeds)
  trials = []
  for combination in itertools.product(*axes.values()):
    values = dict(zip(axes, combination))
    trials.append(make_trial(config, values))
  return trials


def make_trial(config, values: dict) -> Trial:
  """The trial of `values`, its config validated (a ConfigError names the trial)."""
  trial_config = with_values(config, values)
  name = trial_name(values)
  try:
    config_lib.validate(trial_config)
  except ConfigError as e:
    raise ConfigError(f"Trial {name}: {e}") from None
  return Trial(name, values, trial_config)


def describe(value) -> object:
  """A JSON form of a grid value or distribution (the sweep's record)."""
  if isinstance(value, Distribution):
    return f"{value.kind}({', '.join(map(str, value.args))})"
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return list(value) if isinstance(value, tuple) else value
