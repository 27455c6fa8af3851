"""Knowledge distillation: the loss against a hand computation, the teacher inside the step."""

import json
import os

import jax
import numpy as np
import pytest

from configs import mnist_mlp
from jaxlearn.core import losses
from jaxlearn.errors import ConfigError
from jaxlearn.runs import checkpoint, finished
from jaxlearn.training import distill, train


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def test_the_loss_is_alpha_t2_kl_plus_the_rest_cross_entropy():
  rng = np.random.default_rng(0)
  student, teacher_logits = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)) * 3
  labels = np.array([0, 3, 1, 4])
  t, alpha = 3.0, 0.7
  loss_fn = distill.make_loss(lambda x: teacher_logits, losses.cross_entropy, t, alpha)
  got = loss_fn(student, {"inputs": np.zeros((4, 1)), "targets": labels})
  p_teacher, p_student = _softmax(teacher_logits / t), _softmax(student / t)
  kl = np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=-1)
  cross_entropy = -np.log(_softmax(student)[np.arange(4), labels])
  np.testing.assert_allclose(got, alpha * t**2 * kl + (1 - alpha) * cross_entropy, rtol=1e-5)


def _student_config(finished_runs, **distill_fields):
  teacher_config = json.load(open(os.path.join(finished_runs["lenet"], "config.json")))
  config = mnist_mlp.get_config()
  config.data.dir = teacher_config["data"]["dir"]
  config.model.hidden = (32,)
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 80, 1
  config.progress_bar, config.compilation_cache_dir = False, ""
  config.distill.teacher = finished_runs["lenet"]
  config.distill.update(distill_fields)
  return config


def test_a_different_architecture_learns_from_the_teacher_inside_the_step(finished_runs,
                                                                          tmp_path):
  config = _student_config(finished_runs, alpha=1.0, temperature=2.0)
  summary = train.train_and_evaluate(config, str(tmp_path / "student"))
  assert summary["epochs_run"] == 1
  stored = checkpoint.load_best_arrays(str(tmp_path / "student"))
  assert set(stored["params"]) == {"hidden", "head"}  # The teacher's weights are not saved.
  teacher = finished.load_run(finished_runs["lenet"])
  assert teacher.config.model.name == "lenet5" and config.model.name == "mlp"
  assert summary["test_accuracy"] > 0.3  # Ten classes; 20% of the fake labels are noise.


def test_the_first_step_minimises_the_distillation_loss(finished_runs):
  from jaxlearn.runs import build  # pylint: disable=import-outside-toplevel
  from jaxlearn import data  # pylint: disable=import-outside-toplevel
  from jaxlearn.core import step  # pylint: disable=import-outside-toplevel
  config = _student_config(finished_runs, alpha=1.0, temperature=2.0)
  splits = data.make_splits(data.load_raw(config.data), config.data, config.seed)
  task, splits = build.prepare_task(config, splits)
  state = build.create_state(config, 10, build.data_dims(splits, task))
  teacher = distill.load_teacher(config.distill.teacher, splits.preprocessing, 10)
  loss_fn = distill.make_loss(teacher, task.loss, 2.0, 1.0)
  batch = {"inputs": splits.train["inputs"][:16], "targets": splits.train["targets"][:16]}
  _, metrics = jax.jit(lambda s, b: step.train_step(s, b, task=task, loss_fn=loss_fn))(state,
                                                                                       batch)
  student_logits = np.asarray(state.apply_model(state.params, batch["inputs"], train=False)[0])
  teacher_logits = np.asarray(teacher(batch["inputs"]))
  p_teacher, p_student = _softmax(teacher_logits / 2), _softmax(student_logits / 2)
  expected = np.mean(4 * np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), -1))
  assert float(metrics.compute()["loss"]) == pytest.approx(expected, rel=1e-4)


def test_a_teacher_that_sees_other_inputs_is_refused(finished_runs, tmp_path):
  config = _student_config(finished_runs)
  config.distill.teacher = finished_runs["text"]
  with pytest.raises(ConfigError, match=r"takes text inputs shaped \[32\], but the student's "
                     r"data is image shaped \[28, 28, 1\]"):
    train.train_and_evaluate(config, str(tmp_path / "w"))
  config = _student_config(finished_runs)
  config.data.mean, config.data.std = (0.5,), (0.5,)
  with pytest.raises(ConfigError, match=r"was trained on images normalised with mean \[0\.\d+\], "
                     r"the student's data with \[0\.5\]"):
    train.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
