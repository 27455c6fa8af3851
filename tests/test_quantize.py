"""Post-training int8 quantization: per-channel kernels, int8 products, the exported artifact."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxlearn.deploy import artifact, export, quantize
from jaxlearn.errors import ConfigError
from jaxlearn.runs import finished
from tests import runs
from tests.conftest import PROJECT_ROOT


def test_kernels_get_one_symmetric_scale_per_output_channel():
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(3, 3, 4, 8)).astype(np.float32) * np.arange(1, 9)
  q = quantize.quantize_kernel(kernel)
  assert q.q.dtype == np.int8 and q.scale.shape == (8,)
  np.testing.assert_allclose(q.scale, np.abs(kernel).max(axis=(0, 1, 2)) / 127.5, rtol=1e-6)
  assert set(np.abs(q.q.astype(int)).max(axis=(0, 1, 2)).tolist()) <= {127, 128}
  assert np.all(np.abs(q.q * q.scale - kernel) <= q.scale / 2 + 1e-7)


@pytest.mark.parametrize("mode", quantize.MODES)
def test_int8_model_runs_int8_products_and_keeps_the_accuracy(finished_runs, tmp_path, mode):
  workdir = finished_runs["lenet"]
  report = quantize.quantize_and_export(workdir, str(tmp_path / "q"), mode)
  assert report["quantized_kernels"] == ["conv1/kernel", "conv2/kernel", "conv3/kernel",
                                         "fc1/kernel", "fc2/kernel"]
  assert abs(report["int8_test"]["accuracy"] - report["trained_test"]["accuracy"]) <= 0.02
  assert report["max_probability_difference"] < 0.1
  export.export_run(workdir, str(tmp_path / "fp32"))
  fp32_bytes = os.path.getsize(tmp_path / "fp32" / artifact.MODEL_FILE)
  assert report["artifact_bytes"] <= 0.3 * fp32_bytes
  program = jax.export.deserialize(bytearray((tmp_path / "q" / "model.jax").read_bytes()))
  text = program.mlir_module()
  products = [l for l in text.splitlines() if "stablehlo.convolution" in l or
              "stablehlo.dot_general" in l]
  assert len(products) == 5
  assert all("xi8>, tensor<" in l and "xi32>" in l.split("->")[-1] for l in products)
  metadata = json.loads((tmp_path / "q" / "metadata.json").read_text())
  assert metadata["quantization"]["mode"] == mode


def test_the_int8_artifact_runs_without_jaxlearn(finished_runs, tmp_path):
  quantize.quantize_and_export(finished_runs["lenet"], str(tmp_path / "q"), "int8")
  run = finished.load_run(finished_runs["lenet"])
  from jaxlearn.evaluation import evaluate  # pylint: disable=import-outside-toplevel
  _, stored, _ = evaluate.split_inputs(run, "test")
  outputs = runs.call_artifact_in_fresh_process(str(tmp_path / "q"), stored[:7], str(tmp_path))
  calibration = quantize._training_inputs(run)  # pylint: disable=protected-access
  model = quantize.quantize_run(run, "int8", calibration)
  np.testing.assert_allclose(outputs, model.fn(stored[:7]), atol=1e-6)


def test_bad_modes_and_missing_calibration_are_named(finished_runs):
  run = finished.load_run(finished_runs["lenet"])
  with pytest.raises(ConfigError, match="choose one of"):
    quantize.quantize_run(run, "int4")
  with pytest.raises(ConfigError, match="needs calibration inputs"):
    quantize.quantize_run(run, "int8")


def test_the_command_reports_both_accuracies(finished_runs, tmp_path):
  result = subprocess.run([sys.executable, "-m", "jaxlearn.quantize",
                           f"--workdir={finished_runs['lenet']}", f"--out={tmp_path / 'q'}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "int8: 5 kernels in int8" in result.stdout
  assert "test accuracy as trained (float32) " in result.stdout
