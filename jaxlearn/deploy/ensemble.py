"""Ensembles: average the probabilities of several finished runs of one task.

Each member is a run's best checkpoint. The members must take the same inputs
as stored (kind, shape, dtype; each normalises its own way inside its
function), predict the same classes, and be tested on the same examples (the
split each rebuilds from its config must be identical), else a clear error
says which differ. Prints each member's figures and the ensemble's side by
side; `export_ensemble` writes the ensemble as one artifact
(`jaxlearn.deploy.artifact`: one program, every member's weights inside).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxlearn.deploy import artifact
from jaxlearn.errors import ConfigError
from jaxlearn.evaluation import analysis, evaluate
from jaxlearn.runs import inference


def load_members(workdirs: list[str]) -> list[inference.Predictor]:
  if len(workdirs) < 2:
    raise ConfigError("An ensemble needs at least two workdirs (--workdirs=W1,W2,...).")
  resolved = [os.path.realpath(w) for w in workdirs]
  repeated = sorted({w for w, r in zip(workdirs, resolved) if resolved.count(r) > 1})
  if repeated:
    raise ConfigError(f"{', '.join(repeated)} is named more than once in --workdirs; an "
                      "ensemble of one run with itself is that run. Name each member once.")
  members = [inference.load_predictor(w) for w in workdirs]
  first = members[0]
  for member in members[1:]:
    for what, a, b in (("input", first.spec[:3], member.spec[:3]),
                       ("task", first.task, member.task),
                       ("class names", first.class_names, member.class_names)):
      if a != b:
        raise ConfigError(f"{member.run.workdir} differs from {first.run.workdir} in its {what} "
                          f"({b} against {a}); ensemble members must be runs of one task on "
                          "the same inputs.")
  return members


def member_outputs(members, split: str,
                   data_dir: str = "") -> tuple[list[np.ndarray], np.ndarray]:
  """Each member's outputs on `split`, and the split's targets (checked to be one split)."""
  outputs, reference = [], None
  for member in members:
    _, stored, targets = evaluate.split_inputs(member.run, split, data_dir)
    if reference is None:
      reference = (stored, targets)
    elif stored.shape != reference[0].shape or not np.array_equal(stored, reference[0]) \
        or not np.array_equal(targets, reference[1]):
      raise ConfigError(
          f"{member.run.workdir}'s {split} split holds other examples than "
          f"{members[0].run.workdir}'s (another dataset, seed or split setting); an ensemble "
          "is tested on one split. Use members trained on the same split.")
    outputs.append(evaluate.predict_in_batches(member, stored, member.run.config.eval_batch_size))
  return outputs, reference[1]


def export_ensemble(members, out_dir: str, platforms=("cpu",)) -> dict:
  """One jax.export program averaging the members' outputs; metadata as an exported run's."""
  platforms = artifact.check_platforms(platforms)
  artifact.check_new(out_dir)
  fns = [(inference.make_inference_fn(m.run), m.run.state.params) for m in members]
  spec = members[0].spec

  def averaged(x):
    return jnp.mean(jnp.stack([fn(params, x) for fn, params in fns]), axis=0)

  batch = jax.export.symbolic_shape("batch")
  exported = jax.export.export(jax.jit(averaged), platforms=platforms)(
      jax.ShapeDtypeStruct((*batch, *spec.shape), spec.dtype))
  metadata = artifact.metadata_for(members[0].run, exported, platforms)
  metadata["ensemble_of"] = [m.run.workdir for m in members]
  metadata.pop("test_metrics")
  artifact.write(out_dir, exported, metadata)
  return metadata


def evaluate_ensemble(workdirs: list[str], split: str = "test", data_dir: str = "") -> dict:
  """Each member's and the ensemble's figures on `split`."""
  members = load_members(workdirs)
  outputs, targets = member_outputs(members, split, data_dir)
  score = lambda o: analysis.headline_score(members[0].task, targets, o)
  return {"split": split, "task": members[0].task, "num_examples": int(len(targets)),
          "members": [{"workdir": m.run.workdir, **score(o)} for m, o in zip(members, outputs)],
          "ensemble": score(np.mean(outputs, axis=0))}
