"""Average several finished runs: `python -m jaxlearn.ensemble --workdirs=W1,W2,W3`.

Prints each member's figures and the ensemble's on `--split`; `--out=DIR` also
exports the ensemble as one artifact. See `jaxlearn.deploy.ensemble`.
"""

from absl import flags

from jaxlearn import cli


def main(argv):
  del argv
  from jaxlearn.deploy import artifact, ensemble  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  workdirs = [w.strip() for w in values.workdirs.split(",") if w.strip()]
  if values.out:
    artifact.check_new(values.out)  # Before the members are evaluated, which takes a while.
  result = ensemble.evaluate_ensemble(workdirs, values.split, values.data_dir)
  metric = "accuracy" if "accuracy" in result["ensemble"] else "mse"
  for member in result["members"]:
    print(f"member {member['workdir']}: {metric} {member[metric]:.4f}")
  print(f"ensemble of {len(workdirs)}: {metric} {result['ensemble'][metric]:.4f} "
        f"({result['num_examples']} {values.split} examples)")
  if values.out:
    ensemble.export_ensemble(ensemble.load_members(workdirs), values.out)
    print(f"Exported the ensemble to {values.out}/{artifact.MODEL_FILE}")


if __name__ == "__main__":
  flags.DEFINE_string("workdirs", None, "Comma-separated workdirs of finished runs.")
  flags.mark_flags_as_required(["workdirs"])
  cli.define_split_flag("The split to evaluate on.")
  cli.define_data_dir_flag()
  cli.define_out_flag("Also export the ensemble as one artifact here.", required=False)
  cli.run(main)
