"""Ensembles: average the probabilities of several finished runs of one task.

  python -m jaxlearn.ensemble --workdirs=W1,W2,W3 [--split=test] [--out=DIR]

Each member is a run's best checkpoint. The members must take the same inputs
as stored (kind, shape, dtype; each normalises its own way inside its
function), predict the same classes, and be tested on the same examples (the
split each rebuilds from its config must be identical), else a clear error
says which differ. Prints each member's figures and the ensemble's side by
side; `--out` writes the ensemble as one `jaxlearn.export` artifact (one
program, every member's weights inside).
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlearn import analysis, evaluate, export, inference
from jaxlearn.errors import ConfigError


def load_members(workdirs: list[str]) -> list[inference.Predictor]:
  if len(workdirs) < 2:
    raise ConfigError("An ensemble needs at least two workdirs (--workdirs=W1,W2,...).")
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


def member_outputs(members, split: str) -> tuple[list[np.ndarray], np.ndarray]:
  """Each member's outputs on `split`, and the split's targets (checked to be one split)."""
  outputs, reference = [], None
  for member in members:
    _, stored, targets = evaluate.split_inputs(member.run, split)
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
  """One jax.export program averaging the members' outputs; metadata as jaxlearn.export's."""
  fns = [(inference.make_inference_fn(m.run), m.run.state.params) for m in members]
  spec = members[0].spec

  def averaged(x):
    return jnp.mean(jnp.stack([fn(params, x) for fn, params in fns]), axis=0)

  batch = jax.export.symbolic_shape("batch")
  exported = jax.export.export(jax.jit(averaged), platforms=platforms)(
      jax.ShapeDtypeStruct((*batch, *spec.shape), spec.dtype))
  metadata = export.metadata_for(members[0].run, exported, platforms)
  metadata["ensemble_of"] = [m.run.workdir for m in members]
  metadata.pop("test_metrics")
  export.write_artifact(out_dir, exported, metadata)
  return metadata


def evaluate_ensemble(workdirs: list[str], split: str = "test") -> dict:
  """Each member's and the ensemble's figures on `split`."""
  members = load_members(workdirs)
  outputs, targets = member_outputs(members, split)
  score = lambda o: analysis.headline_score(members[0].task, targets, o)
  return {"split": split, "task": members[0].task, "num_examples": int(len(targets)),
          "members": [{"workdir": m.run.workdir, **score(o)} for m, o in zip(members, outputs)],
          "ensemble": score(np.mean(outputs, axis=0))}


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  workdirs = [w.strip() for w in values.workdirs.split(",") if w.strip()]
  result = evaluate_ensemble(workdirs, values.split)
  metric = "accuracy" if "accuracy" in result["ensemble"] else "mse"
  for member in result["members"]:
    print(f"member {member['workdir']}: {metric} {member[metric]:.4f}")
  print(f"ensemble of {len(workdirs)}: {metric} {result['ensemble'][metric]:.4f} "
        f"({result['num_examples']} {values.split} examples)")
  if values.out:
    export_ensemble(load_members(workdirs), values.out)
    print(f"Exported the ensemble to {values.out}/{export.MODEL_FILE}")


if __name__ == "__main__":
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  from jaxlearn import cli  # pylint: disable=g-import-not-at-top
  _flags.DEFINE_string("workdirs", None, "Comma-separated workdirs of finished runs.")
  _flags.DEFINE_enum("split", "test", list(evaluate.SPLITS), "The split to evaluate on.")
  _flags.DEFINE_string("out", "", "Also export the ensemble as one artifact here.")
  _flags.mark_flags_as_required(["workdirs"])
  cli.run(main)
