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
    "TrainState": "jaxlearn.core.state",
    "create_train_state": "jaxlearn.core.state",
    "train_step": "jaxlearn.core.step",
    "train_steps": "jaxlearn.core.step",
    "eval_step": "jaxlearn.core.step",
    "Task": "jaxlearn.core.tasks",
    "TASKS": "jaxlearn.core.tasks",
    "CLASSIFICATION": "jaxlearn.core.tasks",
    "BINARY": "jaxlearn.core.tasks",
    "REGRESSION": "jaxlearn.core.tasks",
    "make_task": "jaxlearn.core.tasks",
    "train_and_evaluate": "jaxlearn.training.train",
    "load_predictor": "jaxlearn.runs.inference",
    "Predictor": "jaxlearn.runs.inference",
    "export_run": "jaxlearn.deploy.export",
    "evaluate_run": "jaxlearn.evaluation.evaluate",
    "gradcheck": "jaxlearn.core.gradients",
    "summarize": "jaxlearn.models.summary",
    "find_learning_rate": "jaxlearn.training.lr_find",
    "ModelSummary": "jaxlearn.models.summary",
}
# Public names that are modules which are also callables (`jaxlearn.summary(model, inputs)`).
_CALLABLE_MODULES = {"summary": "jaxlearn.summary"}

__all__ = sorted({**_EXPORTS, **_CALLABLE_MODULES})


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  if name in _CALLABLE_MODULES:
    return importlib.import_module(_CALLABLE_MODULES[name])
  raise AttributeError(f"module 'jaxlearn' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
