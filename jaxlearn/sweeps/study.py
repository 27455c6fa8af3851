"""Studies: one question of the learning path as a sweep, `python -m jaxlearn.sweep --study=NAME`.

A study is a file `experiments/studies/NAME.py` whose `get_study()` returns a
`Study`: the base config, the settings it compares (each a few config values
under a name, e.g. "nesterov": sgd with momentum 0.9 and nesterov), a grid
crossed with them, and the seeds. Its trials are ordinary sweep trials (each a
normal run in DIR/<setting>,seed=N/, grouped into vectorised programs where
they can be), so the sweep's tables and figures are the study's; the table
names each trial's setting rather than every key it sets. `--smoke` applies
the study's `smoke` overrides (a few hundred examples, one epoch, one seed):
the test suite runs every study that way in seconds.
"""

import dataclasses
import importlib.util
import itertools
import os

from jaxlearn.errors import ConfigError
from jaxlearn.sweeps import spec

STUDIES_DIR = os.path.join("experiments", "studies")

# What --smoke changes in every study unless its own `smoke` says otherwise: seconds per trial.
SMOKE = {"num_epochs": 1, "data.max_train_examples": 256, "logging.layer_stats": False,
         "log_every_steps": 2}


@dataclasses.dataclass(frozen=True)
class Study:
  """What a study compares. `settings` {name: {dotted key: value}} and `grid` {key: [values]}
  are crossed (either may be empty), and every combination trained with each of `seeds`."""
  question: str
  config: object
  settings: dict = dataclasses.field(default_factory=dict)
  grid: dict = dataclasses.field(default_factory=dict)
  seeds: tuple = (0, 1, 2)
  smoke: dict = dataclasses.field(default_factory=dict)  # overrides of SMOKE's for --smoke
  # Trials that diverge answer the question (too large a learning rate): reported, exit 0.
  failures_expected: bool = False
  # False: every trial a single run (which records per-layer statistics; groups do not).
  vectorise: bool = True
  also: tuple = ()  # test metrics results.md shows beside config.monitor, e.g. ("f1",)


def find(name: str, root: str = "") -> str:
  """The study file of `name` (or a path to one): in ./experiments/studies/, else in the
  checkout that holds this package."""
  if name.endswith(".py"):
    if not os.path.exists(name):
      raise ConfigError(f"--study={name}: no such file.")
    return name
  checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  folders = list(dict.fromkeys(os.path.realpath(os.path.join(r, STUDIES_DIR))
                               for r in (root or os.getcwd(), checkout)))
  for folder in folders:
    path = os.path.join(folder, f"{name}.py")
    if os.path.exists(path):
      return path
  known = sorted({f[:-3] for folder in folders if os.path.isdir(folder)
                  for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_")})
  raise ConfigError(f"--study={name}: no study of that name in {' or '.join(folders)}; "
                    + (f"choose one of {known}." if known else "run from the project's root."))


def load(name: str) -> Study:
  """The `Study` that `get_study()` of the study file returns."""
  path = find(name)
  module_name = f"jaxlearn_study_{os.path.basename(path)[:-3]}"
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_study"):
    raise ConfigError(f"{path} defines no get_study(); a study file returns a Study from it.")
  return module.get_study()


def trials(study: Study, smoke: bool = False) -> list[spec.Trial]:
  """Every setting x grid combination x seed, each a validated trial named by its setting."""
  shrink = {**SMOKE, **study.smoke} if smoke else {}
  config = spec.with_values(study.config, shrink)
  seeds = list(study.seeds[:1] if smoke else study.seeds)
  # A grid over what --smoke shrinks (e.g. a budget of epochs) keeps one value, shrunk.
  grid = {k: vs[:1] if k in shrink else vs for k, vs in study.grid.items()}
  settings = study.settings or {"": {}}
  for name, values in settings.items():
    for key in values:
      spec.field_type(config, key, f"study setting {name!r}")
  for key in grid:
    spec.field_type(config, key, f"study grid {key!r}")
  found = []
  for (name, values), combination in itertools.product(settings.items(),
                                                       itertools.product(*grid.values())):
    grid_values = dict(zip(grid, combination))
    for seed in seeds:
      shown = {**({"setting": name} if name else {}), **grid_values, "seed": seed}
      trial_values = {**values, **grid_values, "seed": seed}
      trial_values.update({k: v for k, v in shrink.items() if k in trial_values})
      trial = spec.make_trial(config, trial_values)
      found.append(spec.Trial(spec.trial_name(shown), shown, trial.config))
  return found


def record(study: Study, name: str, smoke: bool) -> dict:
  """What DIR/sweep.json keeps of the study (a rerun with other settings is refused)."""
  return {"study": name, "smoke": smoke,
          "settings": {k: {key: spec.describe(v) for key, v in values.items()}
                       for k, values in study.settings.items()},
          "grid": {k: [spec.describe(v) for v in vs] for k, vs in study.grid.items()},
          "seeds": list(study.seeds[:1] if smoke else study.seeds)}
