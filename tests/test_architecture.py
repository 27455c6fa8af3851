"""The package layout of docs/architecture.md: imports run one way, and no package imports up.

Every import in jaxlearn/ (lazy ones inside functions too) is read from the
source; a module may import its own package and the layers below it, never
one above or beside it (training and evaluation stand side by side).
"""

import ast
import pathlib

from tests.conftest import PROJECT_ROOT

# Bottom to top. A command (the `python -m` modules and their shared plumbing) may import all.
LAYERS = [
    {"errors", "xla_cpu"},
    {"core"},
    {"data"},
    {"models"},
    {"config"},
    {"runs"},
    {"training", "evaluation"},
    {"deploy"},
    {"sweeps"},
]
COMMANDS = {"jaxlearn", "jaxlearn.cli", "jaxlearn.main", "jaxlearn.evaluate", "jaxlearn.predict",
            "jaxlearn.export", "jaxlearn.quantize", "jaxlearn.ensemble", "jaxlearn.serve",
            "jaxlearn.plot", "jaxlearn.sweep", "jaxlearn.summary", "jaxlearn.lr_find", "jaxlearn.diagnose",
            "jaxlearn.visualize",
            "jaxlearn.data.records"}


def _modules() -> dict[str, pathlib.Path]:
  root = PROJECT_ROOT / "jaxlearn"
  modules = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    modules[name] = path
  return modules


def _imports(path: pathlib.Path) -> set[str]:
  """The jaxlearn modules (or packages) `path` imports, anywhere in it."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("jaxlearn")}
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxlearn"):
      found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
  return found


def _package(module: str) -> str:
  """'core' for jaxlearn.core.step, 'config' for jaxlearn.config."""
  return module.split(".")[1] if module.count(".") >= 1 else "jaxlearn"


def _layer(module: str) -> int | None:
  if module in COMMANDS:
    return len(LAYERS)
  return next((i for i, packages in enumerate(LAYERS) if _package(module) in packages), None)


def upward_imports(modules: dict[str, pathlib.Path]) -> list[str]:
  problems = []
  for name, path in sorted(modules.items()):
    here = _layer(name)
    assert here is not None, f"{name} is in no layer of LAYERS; add its package there"
    for target in sorted(_imports(path)):
      if target not in modules or target == "jaxlearn":
        continue  # `from jaxlearn.core import step` also lists jaxlearn.core.step; the package
        # itself (jaxlearn/__init__: the research API) is imported only by users.
      there = _layer(target)
      beside = here == there and _package(name) != _package(target) and name not in COMMANDS
      if there > here or beside:
        problems.append(f"{name} imports {target}")
  return problems


def test_no_module_imports_a_layer_above_or_beside_its_own():
  assert upward_imports(_modules()) == []


def test_the_check_finds_an_upward_import(tmp_path):
  modules = _modules()
  bad = tmp_path / "bad.py"
  bad.write_text("def f():\n  from jaxlearn.training import train\n")
  modules["jaxlearn.core.bad"] = bad
  assert upward_imports(modules) == ["jaxlearn.core.bad imports jaxlearn.training",
                                     "jaxlearn.core.bad imports jaxlearn.training.train"]


def test_no_top_level_module_but_the_face():
  """jaxlearn/ holds the research API, config, errors and the commands; the rest is in packages."""
  top = {p.stem for p in (PROJECT_ROOT / "jaxlearn").glob("*.py")}
  assert top == {"__init__", "cli", "config", "errors", "main", "evaluate", "predict", "export",
                 "quantize", "ensemble", "serve", "plot", "sweep", "summary", "lr_find", "diagnose",
                 "visualize"}
