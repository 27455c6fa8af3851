"""Post-training int8 quantization: `python -m jaxlearn.quantize --workdir=W --out=DIR`.

`--mode=int8` calibrates activation scales on training batches, `int8_weights`
measures them per example; the artifact is `jaxlearn.export`'s format. See
`jaxlearn.deploy.quantize`.
"""

from absl import flags

from jaxlearn import cli


def main(argv):
  del argv
  from jaxlearn.deploy import artifact, quantize  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  report = quantize.quantize_and_export(values.workdir, values.out, values.mode, values.data_dir)
  metric = next(iter(report["trained_test"]))
  trained = "float32" if report["trained_with"] == "none" else report["trained_with"]
  print(f"{values.mode}: {len(report['quantized_kernels'])} kernels in int8 "
        f"({', '.join(report['quantized_kernels'])}); test {metric} as trained ({trained}) "
        f"{report['trained_test'][metric]:.4f}, int8 {report['int8_test'][metric]:.4f}; weights "
        f"{report['weights_bytes']['float32'] / 1e3:.0f} kB -> "
        f"{report['weights_bytes']['int8'] / 1e3:.0f} kB; {values.out}/{artifact.MODEL_FILE} "
        f"{report['artifact_bytes'] / 1e3:.0f} kB")


if __name__ == "__main__":
  cli.define_workdir_flag()
  cli.define_out_flag("Directory for the quantized model.jax and metadata.json.")
  cli.define_data_dir_flag()
  flags.DEFINE_string("mode", "int8", "int8: activation scales calibrated on training batches; "
                      "int8_weights: measured per batch.")
  cli.run(main)
