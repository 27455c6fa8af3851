"""The code of the README and of the docs pages runs as written."""

import re

import pytest

from tests.conftest import PROJECT_ROOT


def test_readme_research_example_runs():
  section = (PROJECT_ROOT / "docs" / "research-api.md").read_text()
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  namespace = {}
  exec(compile(code, "docs/research-api.md", "exec"), namespace)  # pylint: disable=exec-used
  assert int(namespace["state"].step) == 2  # The plain step, then the distillation step.
  assert set(namespace["metrics"].compute()) == {"loss", "accuracy", "learning_rate",
                                                 "grad_norm", "param_norm", "nonfinite"}
  assert float(namespace["metrics"].compute()["learning_rate"]) == pytest.approx(1e-3)
  assert float(namespace["distill_metrics"].compute()["loss"]) > 0


def test_readme_speed_example_runs_four_steps_in_one_call():
  section = (PROJECT_ROOT / "docs" / "research-api.md").read_text()
  first, speed = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
  namespace = {}
  exec(compile(first + speed, "docs/research-api.md", "exec"), namespace)  # pylint: disable=exec-used
  assert int(namespace["state"].step) == 6  # Two steps, then a chunk of four.
  losses = namespace["per_step"]["loss"]
  assert losses.shape == (4,) and float(losses[3]) < float(losses[0])  # The same batch, fitted.
  assert not namespace["per_step"]["nonfinite"].any()


def test_readme_custom_data_example_trains(tmp_path, monkeypatch):
  section = (PROJECT_ROOT / "docs" / "data.md").read_text().split("**Your own data**", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  code = code.replace('"/tmp/squares"', repr(str(tmp_path / "squares")))
  monkeypatch.chdir(PROJECT_ROOT)
  namespace = {}
  exec(compile(code, "docs/data.md", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["summary"]["test_accuracy"] >= 0.9


def test_readme_front_page_snippet_runs():
  code = re.search(r"```python\n(.*?)```", (PROJECT_ROOT / "README.md").read_text(), re.S).group(1)
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert int(namespace["state"].step) == 1
  assert set(namespace["metrics"].compute()) >= {"loss", "accuracy", "grad_norm"}
