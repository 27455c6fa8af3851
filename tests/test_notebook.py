"""experiments/colab_quickstart.ipynb runs top to bottom (small setting, CPU, offline)."""

import os

import pytest

from tests.conftest import PROJECT_ROOT, real_data_dir

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.mark.parametrize("folder", ["experiments", "."])
def test_the_colab_quickstart_runs_top_to_bottom(monkeypatch, folder):
  """From its own folder, as a local Jupyter starts its kernel there, and from the root."""
  if not os.path.exists(os.path.join(real_data_dir(), "mnist")):
    pytest.skip(f"real MNIST not found under {real_data_dir()}")
  monkeypatch.setenv("JAXLEARN_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("JAXLEARN_DATA_DIR", real_data_dir())
  monkeypatch.delenv("PYTHONPATH", raising=False)  # The notebook finds the checkout itself.
  notebook = nbformat.read(PROJECT_ROOT / "experiments" / "colab_quickstart.ipynb", as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(PROJECT_ROOT / folder)}}).execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.outputs)
  assert "jaxlearn ready" in outputs and "CPU device(s)" in outputs
  assert "test accuracy" in outputs and "accuracy" in outputs
  images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
            if "image/png" in o.get("data", {})]
  assert len(images) >= 4  # Curves, confusion matrix, mistakes, predictions.
