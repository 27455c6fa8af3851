"""jaxlearn: pure Flax NNX models and optax optimizers on a jit/pmap-ready `train_step`.

The research surface: build a `TrainState`, compile `train_step` / `eval_step`
yourself, or run the whole loop with `train_and_evaluate(config, workdir)`;
after training, `evaluate_run`, `load_predictor(workdir).predict(inputs)` and
`export_run` work on the run's best checkpoint.
Names are imported on first use, so `python -m jaxlearn.main` starts (and
answers Ctrl-C / SIGTERM) before JAX is loaded.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "TrainState": "jaxlearn.state",
    "create_train_state": "jaxlearn.state",
    "train_step": "jaxlearn.step",
    "train_steps": "jaxlearn.step",
    "eval_step": "jaxlearn.step",
    "Task": "jaxlearn.tasks",
    "TASKS": "jaxlearn.tasks",
    "CLASSIFICATION": "jaxlearn.tasks",
    "BINARY": "jaxlearn.tasks",
    "REGRESSION": "jaxlearn.tasks",
    "make_task": "jaxlearn.tasks",
    "train_and_evaluate": "jaxlearn.train",
    "load_predictor": "jaxlearn.inference",
    "Predictor": "jaxlearn.inference",
    "export_run": "jaxlearn.export",
    "evaluate_run": "jaxlearn.evaluate",
    "gradcheck": "jaxlearn.gradients",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'jaxlearn' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_EXPORTS))
