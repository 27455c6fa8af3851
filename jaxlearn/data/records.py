"""Write an image dataset as ArrayRecord files (the format of `jaxlearn.data.array_record`).

  python -m jaxlearn.data.records --config=configs/mnist_lenet.py --out=DIR

Reads the dataset the config's `data.*` names and writes it into the new
folder DIR (never over an existing one); train on it with
`--config.data.name=array_record --config.data.path=DIR`.
"""

from absl import flags
from ml_collections import config_flags

from jaxlearn import cli


def main(argv) -> None:
  del argv
  from jaxlearn.data import array_record, datasets  # pylint: disable=import-outside-toplevel
  config, out_dir = flags.FLAGS.config, flags.FLAGS.out
  array_record.check_new(out_dir)  # Before reading the dataset, which can take long.
  raw = datasets.load_raw(config.data, config.seed)
  array_record.write(raw, out_dir)
  sizes = ", ".join(f"{len(s[1])} {n}" for n, s in zip(array_record.SPLITS,
                                                       (raw.train, raw.test)) if s)
  print(f"Wrote {config.data.name} ({sizes} images of {raw.train[0].shape[1:]}) to "
        f"{out_dir}; train on it with --config.data.name=array_record "
        f"--config.data.path={out_dir}")


if __name__ == "__main__":
  _CONFIG = config_flags.DEFINE_config_file("config", None,
                                            "Config whose data.* names the dataset to write.")
  cli.define_out_flag("New folder to write the records into.")
  flags.mark_flags_as_required(["config"])
  cli.run(main, flags_parser=lambda argv: cli.parse_config_flags(argv, _CONFIG))
