"""The experiment scripts run as their docstrings say."""

import re
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_profile_step_names_the_mlps_products_with_their_shapes_and_origin():
  run = subprocess.run([sys.executable, "experiments/profile_step.py", "--model", "mlp",
                        "--steps", "4", "--top", "40"],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=True)
  rows = [line.split() for line in run.stdout.splitlines()
          if re.match(r"\s+\d+\.\d{3}\s+\d", line)]
  # The 784 -> 128 layer's forward product, named by the JAX operation it came from.
  assert any("f32[128,128]" in row and row[-1].endswith("dot_general") for row in rows), run.stdout
  assert re.search(r"wall time [\d.]+ ms per step", run.stdout)
