"""Knowledge distillation: a student learns from a finished run's softened outputs.

  --config.distill.teacher=WORKDIR --config.distill.temperature=4 --config.distill.alpha=0.9

The student's loss per example is

  alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)

(Hinton et al. 2015). The teacher is the best checkpoint of the run in WORKDIR,
rebuilt from its config.json (any architecture); its forward pass runs inside
the student's compiled step, its weights are constants there: never trained,
never saved in the student's checkpoints. Teacher and student must see the
same inputs: the same kind and shape, the same normalisation or vocabulary,
and the same classes.
"""

from typing import Callable

import jax
import numpy as np

from jaxlearn.core import losses
from jaxlearn.errors import ConfigError
from jaxlearn.runs import finished


def load_teacher(workdir: str, student_preprocessing: dict, num_classes: int) -> Callable:
  """`inputs -> teacher logits` for the run in `workdir`, checked against the student's data."""
  run = finished.load_run(workdir)
  _check_same_inputs(run, student_preprocessing, num_classes)
  state = run.state
  return lambda inputs: state.apply_model(state.params, inputs, train=False)[0]


def make_loss(teacher: Callable, task_loss: Callable, temperature: float,
              alpha: float) -> Callable:
  """`(student outputs, batch) -> per-example loss` for `jaxlearn.train_step`'s `loss_fn`."""

  def loss_fn(outputs, batch):
    teacher_logits = jax.lax.stop_gradient(teacher(batch["inputs"]))
    soft = losses.distillation_kl(outputs, teacher_logits, temperature=temperature)
    return alpha * soft + (1 - alpha) * task_loss(outputs, batch["targets"])

  return loss_fn


def _check_same_inputs(run: finished.Run, student: dict, num_classes: int) -> None:
  teacher, where = run.preprocessing, f"config.distill.teacher={run.workdir}"
  if run.task != "classification":
    raise ConfigError(f"{where} is a {run.task} run; distillation needs a classification "
                      "teacher.")
  if teacher["input"]["kind"] != student["input"]["kind"] or \
      teacher["input"]["shape"] != student["input"]["shape"]:
    raise ConfigError(
        f"{where} takes {teacher['input']['kind']} inputs shaped {teacher['input']['shape']}, "
        f"but the student's data is {student['input']['kind']} shaped "
        f"{student['input']['shape']}; teacher and student must see the same inputs.")
  for key in ("mean", "std"):  # Fitted on two train splits of one dataset: close, not equal.
    if key in teacher and not np.allclose(teacher[key], student[key], rtol=1e-2, atol=1e-3):
      raise ConfigError(
          f"{where} was trained on images normalised with {key} {teacher[key]}, the student's "
          f"data with {student[key]}; set the student's config.data.mean/std to the teacher's "
          f"(--config.data.mean='{tuple(teacher['mean'])}' "
          f"--config.data.std='{tuple(teacher['std'])}').")
  if "vocabulary" in teacher and teacher["vocabulary"] != student.get("vocabulary"):
    raise ConfigError(f"{where} has another vocabulary than the student's data (the texts or "
                      "config.data.vocab_size/min_count differ); the token ids would not match.")
  classes = teacher["model_dims"]["num_classes"]
  if classes != num_classes:
    raise ConfigError(f"{where} predicts {classes} classes, the student {num_classes}.")
