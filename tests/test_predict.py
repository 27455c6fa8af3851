"""`load_predictor`, `jaxlearn.predict` and `jaxlearn.export` on finished runs of each kind."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from jaxlearn.data import pipeline
from jaxlearn.deploy import export
from jaxlearn.errors import InputError
from jaxlearn.evaluation import evaluate
from jaxlearn.runs import finished, inference
from tests.conftest import PROJECT_ROOT


def _predict_cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxlearn.predict", *args], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=300)


def _reference(workdir, stored):
  """The checkpoint's probabilities the training way: normalised as the pipeline does."""
  run = finished.load_run(workdir)
  x = pipeline.preprocess(run.spec.kind, run.preprocessing, stored) if run.spec.kind == "image" \
      else stored
  outputs, _ = run.state.apply_model(run.state.params, x, train=False)
  return np.asarray(inference.to_probabilities(outputs, run.task))


def test_predictor_gives_the_checkpoints_softmax_on_raw_pixels(finished_runs):
  predictor = inference.load_predictor(finished_runs["lenet"])
  _, stored, _ = evaluate.split_inputs(predictor.run, "test")
  probabilities = predictor.predict(list(stored[:7]))  # A list of (28, 28, 1) uint8 arrays.
  np.testing.assert_allclose(probabilities, _reference(finished_runs["lenet"], stored[:7]),
                             atol=1e-6)
  assert probabilities.shape == (7, 10)
  np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)
  two_d = predictor.predict([stored[0, ..., 0]])  # (28, 28) without the channel axis
  np.testing.assert_allclose(two_d, probabilities[:1], atol=1e-6)


def test_images_of_any_size_and_mode_are_converted_and_the_conversions_said(finished_runs,
                                                                            tmp_path):
  predictor = inference.load_predictor(finished_runs["lenet"])
  _, stored, _ = evaluate.split_inputs(predictor.run, "test")
  digit = stored[3, ..., 0]
  Image.fromarray(digit).save(tmp_path / "gray.png")
  Image.fromarray(digit).convert("RGB").resize((280, 210)).save(tmp_path / "photo.jpg")
  rgba = Image.fromarray(digit).convert("RGBA")
  rgba.putalpha(255)
  rgba.save(tmp_path / "rgba.png")
  np.save(tmp_path / "digit.npy", digit)
  result = _predict_cli(f"--workdir={finished_runs['lenet']}", "--json", "--top_k=2",
                        *(str(tmp_path / n) for n in ("gray.png", "photo.jpg", "rgba.png",
                                                      "digit.npy")))
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in result.stdout.splitlines()]
  expected = predictor.predict([digit])[0]
  gray, photo, rgba_record, npy = records
  assert gray["input"] == str(tmp_path / "gray.png") and "notes" not in gray
  assert [t["class"] for t in gray["top"]] == list(np.argsort(-expected)[:2])
  assert gray["top"][0]["probability"] == pytest.approx(expected.max(), abs=1e-6)
  assert gray["top"][0]["name"] == str(gray["top"][0]["class"])
  assert photo["notes"] == ["converted from RGB to grayscale", "resized from 280x210 to 28x28"]
  assert rgba_record["notes"][:2] == ["transparency flattened onto white",
                                      "converted from RGBA to grayscale"]
  assert rgba_record["top"] == gray["top"]  # Opaque: flattening changes no pixel.
  assert npy["top"] == gray["top"]
  human = _predict_cli(f"--workdir={finished_runs['lenet']}", str(tmp_path / "photo.jpg"))
  assert "(converted from RGB to grayscale; resized from 280x210 to 28x28)" in human.stdout


@pytest.mark.parametrize("bad,message", [
    (np.zeros((3, 28, 28)), r"Got an array shaped \(3, 28, 28\); the model takes .* shaped "
                            r"\(28, 28, 1\) or \(28, 28\)"),
    (np.full((28, 28), 0.5), r"Got an array of float64 with values 0.5..0.5; .*whole numbers"),
])
def test_a_wrong_array_is_one_line_naming_what_was_expected(finished_runs, bad, message):
  predictor = inference.load_predictor(finished_runs["lenet"])
  with pytest.raises(InputError, match=message):
    predictor.predict([bad])


def test_wrong_inputs_on_the_command_line_are_exit_2_and_one_line(finished_runs, tmp_path):
  (tmp_path / "notes.png").write_text("not an image")
  result = _predict_cli(f"--workdir={finished_runs['lenet']}", str(tmp_path / "notes.png"))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert f"{tmp_path / 'notes.png'} is not an image PIL can read" in result.stderr
  empty = _predict_cli(f"--workdir={finished_runs['text']}", "--text", "  ")
  assert empty.returncode == 2
  assert "Got an empty string; the model takes a non-empty string of text." in empty.stderr


def test_text_and_table_runs_predict_from_strings_files_and_rows(finished_runs, tmp_path):
  result = _predict_cli(f"--workdir={finished_runs['text']}", "--json",
                        "--text", "a wonderful brilliant film", "--text", "awful boring plot")
  assert result.returncode == 0, result.stderr
  positive, negative = [json.loads(line) for line in result.stdout.splitlines()]
  assert [t["name"] for t in positive["top"]] == ["positive", "negative"]  # Two classes.
  assert negative["top"][0]["name"] == "negative" and positive["input"] == \
      "a wonderful brilliant film"
  (tmp_path / "reviews.txt").write_text("a wonderful brilliant film\n\nawful boring plot\n")
  from_file = _predict_cli(f"--workdir={finished_runs['text']}", "--json",
                           str(tmp_path / "reviews.txt"))
  lines = [json.loads(line) for line in from_file.stdout.splitlines()]
  assert [r["input"] for r in lines] == [f"{tmp_path / 'reviews.txt'}:1",
                                         f"{tmp_path / 'reviews.txt'}:3"]  # Blank lines skipped.
  assert [r["top"] for r in lines] == [positive["top"], negative["top"]]
  predictor = inference.load_predictor(finished_runs["table"])
  rows = [{"Pclass": "1", "Sex": "female", "Age": "30", "SibSp": "0", "Parch": "0",
           "Fare": "80", "Embarked": "S"}, {"Pclass": "3", "Sex": "male"}]
  p_female, p_male = predictor.predict(rows)
  assert p_female > p_male
  (tmp_path / "rows.csv").write_text("Pclass,Sex,Age\n1,female,30\n3,male,\n")
  table = _predict_cli(f"--workdir={finished_runs['table']}", "--json", str(tmp_path / "rows.csv"))
  records = [json.loads(line) for line in table.stdout.splitlines()]
  assert [r["input"] for r in records] == [f"{tmp_path / 'rows.csv'}:2", f"{tmp_path / 'rows.csv'}:3"]
  assert "missing ['SibSp', 'Parch', 'Fare', 'Embarked']" in records[0]["notes"][0]


_LOAD_EXPORT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    program = jax.export.deserialize(bytearray(open(sys.argv[1] + "/model.jax", "rb").read()))
    metadata = json.load(open(sys.argv[1] + "/metadata.json"))
    inputs = np.load(sys.argv[2])
    out = {str(n): np.asarray(program.call(inputs[:n])).tolist() for n in (1, 7, len(inputs))}
    assert not any(m == "jaxlearn" or m.startswith(("jaxlearn.", "flax")) for m in sys.modules)
    print(json.dumps({"outputs": out, "shape": metadata["input"]["shape"]}))
""")


@pytest.mark.parametrize("kind", ["lenet", "text", "table", "linreg"])
def test_export_runs_without_jaxlearn_and_equals_the_checkpoint(finished_runs, tmp_path, kind):
  workdir = finished_runs[kind]
  metadata = export.export_run(workdir, str(tmp_path / "export"))
  run = finished.load_run(workdir)
  _, stored, _ = evaluate.split_inputs(run, "test")
  stored = np.resize(stored, (1000, *stored.shape[1:]))  # Test examples, repeated to 1000.
  np.save(tmp_path / "inputs.npy", stored)
  result = subprocess.run([sys.executable, "-c", _LOAD_EXPORT, str(tmp_path / "export"),
                           str(tmp_path / "inputs.npy")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  loaded = json.loads(result.stdout)
  expected = _reference(workdir, stored)
  for n in (1, 7, 1000):
    np.testing.assert_allclose(np.array(loaded["outputs"][str(n)]), expected[:n], atol=1e-5)
  assert loaded["shape"] == ["batch", *stored.shape[1:]]
  assert metadata["input"]["dtype"] == str(stored.dtype)
  assert metadata["test_metrics"] == {k: v for k, v in json.load(
      open(os.path.join(workdir, "summary.json"))).items() if k.startswith("test_")}
  if kind == "text":
    assert metadata["text"]["vocabulary"] == run.preprocessing["vocabulary"]
  if kind == "lenet":
    assert metadata["class_names"] == [str(d) for d in range(10)]
    assert stored.dtype == np.uint8  # Normalisation is inside the program.


def test_export_command_and_a_run_that_is_not_there(finished_runs, tmp_path):
  run = lambda *a: subprocess.run([sys.executable, "-m", "jaxlearn.export", *a],
                                  cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  result = run(f"--workdir={finished_runs['lenet']}", f"--out={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr
  assert "Exported lenet5 (classification)" in result.stdout
  assert sorted(os.listdir(tmp_path / "out")) == ["metadata.json", "model.jax"]
  missing = run(f"--workdir={tmp_path / 'none'}", f"--out={tmp_path / 'out2'}")
  assert missing.returncode == 2 and "does not exist" in missing.stderr
  assert not os.path.exists(tmp_path / "out2")


def test_dark_ink_on_light_paper_is_pointed_out_and_invert_undoes_it(finished_runs, tmp_path):
  predictor = inference.load_predictor(finished_runs["lenet"])
  _, stored, _ = evaluate.split_inputs(predictor.run, "test")
  Image.fromarray(255 - stored[4, ..., 0]).save(tmp_path / "paper.png")
  plain = _predict_cli(f"--workdir={finished_runs['lenet']}", "--json", str(tmp_path / "paper.png"))
  note = json.loads(plain.stdout)["notes"][0]
  assert note.startswith("much lighter than the training images (mean 0.")
  assert note.endswith("invert it (--invert)")
  inverted = _predict_cli(f"--workdir={finished_runs['lenet']}", "--json", "--invert",
                          str(tmp_path / "paper.png"))
  record = json.loads(inverted.stdout)
  assert record["notes"] == ["inverted (255 - pixel)"]
  expected = predictor.predict_stored(stored[4:5])[0]
  assert record["top"][0]["probability"] == pytest.approx(expected.max(), abs=1e-6)
  np.testing.assert_allclose(predictor.predict([tmp_path / "paper.png"], invert=True)[0],
                             expected, atol=1e-6)
