"""Model summary: `python -m jaxlearn.summary --config=configs/X.py` prints every layer.

Each layer's path, type, output shape, parameters, FLOPs (forward, and with
--backward the backward pass too) and activation memory, with the totals
(trainable, frozen by config.freeze, non-trainable state such as batch-norm
statistics) — for the model the config builds, on its data's examples. Every
training run writes the same table to WORKDIR/model_summary.txt.

In Python this module is itself the function:

  import jaxlearn
  print(jaxlearn.summary(model, images, train=False))  # a jaxlearn.models.summary.ModelSummary

takes any Flax NNX module and inputs (arrays or `jax.ShapeDtypeStruct`s).
"""

import sys
import types

from absl import flags

from jaxlearn import cli


def main(argv):
  if len(argv) > 1:
    raise _error(f"Unexpected arguments {argv[1:]}; this command takes only flags.")
  # pylint: disable=import-outside-toplevel
  from jaxlearn import data
  from jaxlearn.runs import build
  values = flags.FLAGS
  config = values.config
  splits = data.make_splits(data.load_raw(config.data, config.seed), config.data, config.seed)
  task, splits = build.prepare_task(config, splits)
  state = build.checked_state(config, splits, task, 1)
  inputs = splits.train["inputs"][:values.batch_size]
  table = build.summarize_state(state, inputs, config, backward=values.backward)
  print(table.table(values.depth if values.depth >= 0 else None), end="")


def _error(message: str):
  from jaxlearn.errors import ConfigError  # pylint: disable=import-outside-toplevel
  return ConfigError(message)


class _CallableModule(types.ModuleType):
  """`jaxlearn.summary(model, *inputs, **call_kwargs)`: see `jaxlearn.models.summary`."""

  def __call__(self, model, *inputs, **kwargs):
    from jaxlearn.models.summary import summarize  # pylint: disable=import-outside-toplevel
    return summarize(model, *inputs, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  _CONFIG = config_flags.DEFINE_config_file("config", None, "The experiment's config "
                                            "(configs/*.py).", lock_config=True)
  flags.mark_flags_as_required(["config"])
  flags.DEFINE_integer("batch_size", 1, "Examples per batch that shapes, FLOPs and activation "
                       "memory are counted for.", lower_bound=1)
  flags.DEFINE_bool("backward", False, "Also count each layer's backward-pass FLOPs.")
  flags.DEFINE_integer("depth", -1, "Show layers this many levels deep (0: the model alone); "
                       "-1: all.")
  cli.run(main, flags_parser=lambda argv: cli.parse_config_flags(argv, _CONFIG))
