"""After training, as a user meets it: damaged checkpoints, live workdirs, outputs that exist."""

import glob
import os

import pytest

from jaxlearn.deploy import ensemble, export
from jaxlearn.errors import CheckpointError, ConfigError, InputError, WorkdirError
from jaxlearn.evaluation import evaluate
from jaxlearn.runs import finished, workdir as workdir_lib
from jaxlearn.training import train
from tests import runs


def _flip_bytes(step_dir: str, count: int = 48) -> str:
  """Flips `count` bytes in the middle of the step's largest array file (same size)."""
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**"), recursive=True)
           if os.path.isfile(f) and os.sep + "d" + os.sep in f]
  path = max(files, key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  middle = len(data) // 2
  data[middle:middle + count] = bytes(b ^ 0xFF for b in data[middle:middle + count])
  with open(path, "wb") as f:
    f.write(bytes(data))
  return path


def _tree(directory) -> dict:
  return {os.path.relpath(os.path.join(root, name), directory):
          open(os.path.join(root, name), "rb").read()
          for root, _, names in os.walk(directory) for name in names if name != ".lock"}


def test_a_bit_flipped_best_checkpoint_is_refused_not_used(tmp_path):
  workdir = runs.lenet_run(str(tmp_path))
  finished.load_run(workdir)  # Whole, it loads.
  (best,) = glob.glob(os.path.join(workdir, "checkpoints", "best", "*"))
  _flip_bytes(best)
  before = _tree(workdir)
  with pytest.raises(CheckpointError, match=r"checkpoints/best/\d+ (is damaged|could not be "
                                            r"read).*Nothing was changed in the workdir\."):
    evaluate.evaluate_run(workdir)
  assert _tree(workdir) == before
  assert not os.path.exists(os.path.join(workdir, "evaluation"))


def test_a_bit_flipped_latest_checkpoint_is_never_resumed_from(tmp_path):
  workdir = runs.lenet_run(str(tmp_path))
  latest = max(glob.glob(os.path.join(workdir, "checkpoints", "latest", "*")),
               key=lambda p: int(os.path.basename(p)))
  _flip_bytes(latest)
  config = runs.lenet_config(str(tmp_path))
  config.num_epochs = 3  # More epochs: the run would resume from `latest`.
  before = _tree(workdir)
  with pytest.raises(CheckpointError, match=r"checkpoints/latest/\d+ (is damaged|could not be "
                                            r"read)"):
    train.train_and_evaluate(config, workdir)
  assert _tree(workdir) == before


def test_a_run_still_training_is_not_evaluated_or_exported(tmp_path):
  workdir = runs.lenet_run(str(tmp_path))
  config = runs.lenet_config(str(tmp_path))
  with workdir_lib.claim(workdir, config):  # As a training process holds it.
    for call in (lambda: evaluate.evaluate_run(workdir),
                 lambda: export.export_run(workdir, str(tmp_path / "export"))):
      with pytest.raises(WorkdirError, match=rf"holds a run that is still training \(process "
                                             rf"{os.getpid()} on .*\); its best checkpoint is "
                                             r"from an unfinished run"):
        call()
  assert not os.path.exists(os.path.join(workdir, "evaluation"))
  assert not os.path.exists(tmp_path / "export")
  evaluate.evaluate_run(workdir)  # Once the lock is free, it evaluates.


def test_an_existing_out_folder_is_refused_and_kept(finished_runs, tmp_path):
  out = tmp_path / "export"
  export.export_run(finished_runs["linreg"], str(out))
  before = _tree(out)
  with pytest.raises(InputError, match=f"{out} already exists; pass a new folder"):
    export.export_run(finished_runs["linreg"], str(out))
  assert _tree(out) == before
  (tmp_path / "file").write_text("x")
  with pytest.raises(InputError, match="which is a file; pass a folder path"):
    export.export_run(finished_runs["linreg"], str(tmp_path / "file" / "export"))


def test_an_ensemble_of_one_run_twice_is_refused(finished_runs):
  workdir = finished_runs["linreg"]
  with pytest.raises(ConfigError, match="is named more than once in --workdirs"):
    ensemble.load_members([workdir, workdir + "/"])


def test_arrays_that_differ_from_their_saved_checksums_are_named(finished_runs, tmp_path):
  """The check itself: a checkpoint whose arrays read back fine but differ from its checksums."""
  import json  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "linreg")
  shutil.copytree(finished_runs["linreg"], workdir)
  (best,) = glob.glob(os.path.join(workdir, "checkpoints", "best", "*"))
  path = os.path.join(best, "checksums", "metadata")
  sums = json.load(open(path))
  assert set(sums) >= {"params/linear/kernel", "params/linear/bias", "step", "rng"}
  sums["params/linear/kernel"] = "0" * 64
  json.dump(sums, open(path, "w"))
  with pytest.raises(CheckpointError, match=r"checkpoints/best/\d+ is damaged: "
                                            r"params/linear/kernel no longer match"):
    finished.load_run(workdir)


@pytest.mark.parametrize("name,content,message", [
    ("config.json", "{}", r"config\.json lacks seed, task, eval_batch_size, model\.name, "
     r"data\.name, which training writes there"),
    ("config.json", "[1, 2]", r"config\.json holds a JSON list, not the object training wrote"),
    ("preprocessing.json", '{"input": {"kind": "image", "shape": [28, 28, 1], "dtype": "uint8"}, '
     '"model_dims": {}}', r"preprocessing\.json lacks mean, std, which training writes there"),
    ("preprocessing.json", "not json", r"preprocessing\.json is not valid JSON"),
])
def test_a_damaged_record_of_the_run_is_one_message_naming_the_file(finished_runs, tmp_path, name,
                                                                      content, message):
  import shutil  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "lenet")
  shutil.copytree(finished_runs["lenet"], workdir)
  with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
    f.write(content)
  with pytest.raises(InputError, match=rf"{tmp_path}/lenet/{message}"):
    finished.load_run(workdir)


def _predict_cli(*args):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from tests.conftest import PROJECT_ROOT  # pylint: disable=import-outside-toplevel
  return subprocess.run([sys.executable, "-m", "jaxlearn.predict", *args], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=300)


def _digits(finished_runs, count):
  """`count` test digits of the lenet run's data as uint8 (28, 28) arrays."""
  from jaxlearn.data import idx  # pylint: disable=import-outside-toplevel
  path = os.path.join(os.path.dirname(finished_runs["lenet"]), "data", "mnist",
                      "t10k-images-idx3-ubyte.gz")
  return idx.read_idx(path, 2051)[:count]


def test_many_inputs_one_unreadable_predicts_the_rest_and_exits_2(finished_runs, tmp_path):
  import json  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  paths = []
  for i, digit in enumerate(_digits(finished_runs, 3)):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(digit).save(paths[-1])
  (tmp_path / "bad.png").write_text("not an image")
  paths.insert(1, str(tmp_path / "bad.png"))
  result = _predict_cli(f"--workdir={finished_runs['lenet']}", "--json", *paths)
  assert result.returncode == 2, result.stderr
  lines = [json.loads(line) for line in result.stdout.splitlines()]
  assert [line["input"] for line in lines] == paths
  assert lines[1] == {"input": paths[1],
                      "error": f"{paths[1]} is not an image PIL can read (PNG, JPEG, ...)."}
  assert all("top" in line for i, line in enumerate(lines) if i != 1)
  assert f"jaxlearn: error: {paths[1]} is not an image PIL can read" in result.stderr
  assert "1 of 4 inputs could not be predicted (each is named above); the other 3 were." in \
      result.stderr
  assert "Traceback" not in result.stderr


def test_a_16_bit_png_predicts_as_its_8_bit_original(finished_runs, tmp_path):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs import inference  # pylint: disable=import-outside-toplevel
  digits = _digits(finished_runs, 20)
  eight, sixteen = [], []
  for i, digit in enumerate(digits):
    eight.append(str(tmp_path / f"{i}_8.png"))
    sixteen.append(str(tmp_path / f"{i}_16.png"))
    Image.fromarray(digit).save(eight[-1])
    Image.fromarray(digit.astype(np.uint16) * 257).save(sixteen[-1])  # 255 -> 65535, exactly.
  assert Image.open(sixteen[0]).mode.startswith("I")
  predictor = inference.load_predictor(finished_runs["lenet"])
  np.testing.assert_array_equal(predictor.predict(sixteen), predictor.predict(eight))


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), r"empty\.npy is not a NumPy \.npy array file \(EOFError"),
    (lambda p: __import__("numpy").save(p, __import__("numpy").array([["a"] * 28] * 28)),
     r"Got an array of <U1; the model takes .*\(numbers, not text or objects\)"),
])
def test_npy_files_that_are_not_pixel_arrays_are_named(finished_runs, tmp_path, make, message):
  from jaxlearn.runs import inference  # pylint: disable=import-outside-toplevel
  path = tmp_path / "empty.npy"
  make(path)
  with pytest.raises(InputError, match=message):
    inference.load_predictor(finished_runs["lenet"]).predict([str(path)])


def test_a_decompression_bomb_is_refused_by_predict_and_serve(finished_runs, tmp_path,
                                                              monkeypatch):
  import base64  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxlearn.deploy import serve  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs import inference  # pylint: disable=import-outside-toplevel
  path = tmp_path / "bomb.png"
  Image.new("L", (2000, 2000)).save(path)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000 * 1000)  # 4e6 pixels: over twice it.
  predictor = inference.load_predictor(finished_runs["lenet"])
  with pytest.raises(InputError, match=r"bomb\.png is too large to decode: Image size "
                                       r"\(4000000 pixels\) exceeds limit"):
    predictor.predict([str(path)])
  with pytest.raises(InputError, match=r"An instance's \"b64\" image is too large to decode"):
    serve.decode_instance({"b64": base64.b64encode(path.read_bytes()).decode()}, predictor.spec)


def test_inputs_of_the_other_modality_say_what_the_model_takes(finished_runs, tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.new("L", (28, 28)).save(tmp_path / "digit.png")
  text = _predict_cli(f"--workdir={finished_runs['text']}", str(tmp_path / "digit.png"))
  assert text.returncode == 2
  assert "digit.png is not a UTF-8 text file; this model takes text" in text.stderr
  image = _predict_cli(f"--workdir={finished_runs['lenet']}", "--text", "a gripping film")
  assert image.returncode == 2
  assert "--text is for text models; this model takes an image file" in image.stderr
  assert "Traceback" not in text.stderr + image.stderr


def test_serve_answers_json_clients_bounds_bodies_and_pixels(finished_runs):
  import base64  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel
  import httpx  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from tests.test_serve import Server  # pylint: disable=import-outside-toplevel
  server = Server(f"--workdir={finished_runs['lenet']}", "--max_body_bytes=2000000",
                  "--max_pixels=1000")
  try:
    # KServe's v1 liveness (GET / asking for JSON), and the demo page for a browser.
    assert httpx.get(server.url + "/", headers={"Accept": "application/json"}).json() == {
        "status": "alive"}
    page = httpx.get(server.url + "/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html") and "<html" in page.text.lower()
    # A chunked body (no Content-Length) is cut off at the limit while it is read.
    chunks = (b"x" * 1_000_000 for _ in range(30))
    big = httpx.post(server.url + "/v1/models/lenet5:predict", content=chunks, timeout=60)
    assert big.status_code == 413
    assert big.json() == {"error": "The body is over 2000000 bytes; this server takes at most "
                                   "2000000 (--max_body_bytes)."}
    # Images past --max_pixels are refused from their headers.
    png = io.BytesIO()
    Image.new("L", (40, 40)).save(png, format="PNG")
    b64 = {"b64": base64.b64encode(png.getvalue()).decode()}
    over = httpx.post(server.url + "/v1/models/lenet5:predict", json={"instances": [b64]})
    assert over.status_code == 413
    assert over.json()["error"].startswith('instances[0]: An instance\'s "b64" image is 40x40 '
                                           "pixels; the request may carry 1000 more")
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}  # Still serving.
  finally:
    assert server.stop() == 0


def test_serve_refuses_a_port_out_of_range_or_in_use(finished_runs):
  import socket  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from tests.conftest import PROJECT_ROOT  # pylint: disable=import-outside-toplevel
  run = lambda *args: subprocess.run([sys.executable, "-m", "jaxlearn.serve",
                                      f"--workdir={finished_runs['linreg']}", *args],
                                     cwd=PROJECT_ROOT, capture_output=True, text=True,
                                     timeout=300)
  out_of_range = run("--port=70000")
  assert out_of_range.returncode == 2
  assert "--port=70000" in out_of_range.stderr and "65535" in out_of_range.stderr
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    in_use = run(f"--port={port}")
  assert in_use.returncode == 2, in_use.stderr
  assert f"jaxlearn: error: Cannot listen on 127.0.0.1:{port}" in in_use.stderr
  assert "Serving" not in in_use.stdout


def test_export_names_bad_platforms_and_follows_the_umask(finished_runs, tmp_path):
  import stat  # pylint: disable=import-outside-toplevel
  for platforms, message in ((("bogus",), r"--platforms=bogus: unknown bogus; jax\.export lowers "
                                          r"for cpu, cuda, rocm, tpu"),
                             (("gpu",), r"unknown gpu; .*an NVIDIA GPU is cuda")):
    with pytest.raises(InputError, match=message):
      export.export_run(finished_runs["linreg"], str(tmp_path / "x"), platforms)
  assert not (tmp_path / "x").exists()
  old = os.umask(0o022)
  try:
    export.export_run(finished_runs["linreg"], str(tmp_path / "export"))
  finally:
    os.umask(old)
  for name in ("model.jax", "metadata.json"):
    assert stat.S_IMODE(os.stat(tmp_path / "export" / name).st_mode) == 0o644


def test_a_damaged_export_dir_is_one_message(finished_runs, tmp_path):
  import json  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  from jaxlearn.deploy import serve  # pylint: disable=import-outside-toplevel
  good = tmp_path / "export"
  export.export_run(finished_runs["linreg"], str(good))
  truncated = tmp_path / "truncated"
  shutil.copytree(good, truncated)
  data = (truncated / "model.jax").read_bytes()
  (truncated / "model.jax").write_bytes(data[:len(data) // 2])
  with pytest.raises(InputError, match=r"model\.jax cannot be read as a jax\.export program "
                                       r"\(\w+\); it is truncated or damaged"):
    serve.from_export_dir(str(truncated))
  partial = tmp_path / "partial"
  shutil.copytree(good, partial)
  metadata = json.loads((partial / "metadata.json").read_text())
  del metadata["preprocessing"]
  (partial / "metadata.json").write_text(json.dumps(metadata))
  with pytest.raises(InputError, match=r"metadata\.json lacks preprocessing; it was not written "
                                       r"by python -m jaxlearn\.export"):
    serve.from_export_dir(str(partial))


def test_a_workdir_remembers_where_its_data_came_from(tmp_path, monkeypatch):
  import shutil  # pylint: disable=import-outside-toplevel
  from tests.conftest import make_fake_mnist  # pylint: disable=import-outside-toplevel
  root = make_fake_mnist(tmp_path / "data")
  monkeypatch.setenv("JAXLEARN_DATA_DIR", root)  # Trained from a shell that set it ...
  config = runs.lenet_config(str(tmp_path))
  config.data.dir = ""
  workdir = str(tmp_path / "lenet")
  summary = train.train_and_evaluate(config, workdir)
  monkeypatch.delenv("JAXLEARN_DATA_DIR")  # ... evaluated from one that does not.
  report = evaluate.evaluate_run(workdir)
  assert report["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  shutil.move(root, tmp_path / "moved")  # The data moved: the hint names this command's flag.
  with pytest.raises(Exception, match=r"--data_dir=ROOT") as error:
    evaluate.evaluate_run(workdir)
  assert "--config.data.dir" not in str(error.value)
  moved = evaluate.evaluate_run(workdir, data_dir=str(tmp_path / "moved"))
  assert moved["accuracy"] == report["accuracy"]


def test_a_truncated_best_checkpoint_is_one_paragraph_on_the_command_line(finished_runs,
                                                                          tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from tests.conftest import PROJECT_ROOT  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "lenet"
  shutil.copytree(finished_runs["lenet"], workdir)
  (best,) = glob.glob(str(workdir / "checkpoints" / "best" / "*"))
  files = [f for f in glob.glob(os.path.join(best, "state", "**"), recursive=True)
           if os.path.isfile(f) and os.sep + "d" + os.sep in f]
  path = max(files, key=os.path.getsize)
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 3])
  before = _tree(workdir)
  result = subprocess.run([sys.executable, "-m", "jaxlearn.evaluate", f"--workdir={workdir}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("jaxlearn: error: The checkpoint "), \
      result.stderr
  assert "corrupt or incomplete" in lines[0] and len(lines[0]) < 800
  assert _tree(workdir) == before


def test_what_a_failed_read_abandons_is_not_reported_but_other_errors_are(
    finished_runs, tmp_path, monkeypatch, caplog):
  """Orbax's other reads, still in flight when one fails, report from other threads later."""
  import gc  # pylint: disable=import-outside-toplevel
  import logging as python_logging  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs import checkpoint  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "lenet"
  shutil.copytree(finished_runs["lenet"], workdir)
  (best,) = glob.glob(str(workdir / "checkpoints" / "best" / "*"))
  for path in glob.glob(os.path.join(best, "state", "**", "d", "*"), recursive=True):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 3])
  reported = []
  monkeypatch.setattr(sys, "unraisablehook", reported.append)
  with pytest.raises(CheckpointError, match="corrupt or incomplete"):
    checkpoint.load_best_arrays(str(workdir))
  time.sleep(1)  # The abandoned reads finish and report, to the hook the failure left.
  gc.collect()
  orbax_coroutine = types.SimpleNamespace(cr_code=checkpoint.ocp.CheckpointManager.restore.__code__)
  leftovers = [types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"), object=None),
               types.SimpleNamespace(exc_value=Exception("Encountered error while reading"),
                                     object=orbax_coroutine)]
  ours = types.SimpleNamespace(exc_value=ValueError("a bug of ours"), object=None)
  for unraisable in leftovers + [ours]:
    sys.unraisablehook(unraisable)
  assert reported == [ours]
  with caplog.at_level(python_logging.ERROR):
    python_logging.getLogger("asyncio").error(
        "Task exception was never retrieved\nfuture: <Task coro=<async_deserialize() defined "
        "at .../orbax/checkpoint/_src/serialization/serialization.py:394>>")
    python_logging.getLogger("asyncio").error("Task exception was never retrieved: ours")
  assert [r.getMessage() for r in caplog.records] == ["Task exception was never retrieved: ours"]


def test_tritons_http_client_reads_the_open_inference_protocol(finished_runs, test_images_u8):
  import numpy as np  # pylint: disable=import-outside-toplevel
  tritonclient = pytest.importorskip("tritonclient.http")
  from jaxlearn.runs import inference  # pylint: disable=import-outside-toplevel
  from tests.test_serve import Server  # pylint: disable=import-outside-toplevel
  server = Server(f"--workdir={finished_runs['lenet']}")
  try:
    client = tritonclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("lenet5")
    metadata = client.get_model_metadata("lenet5")
    assert metadata["inputs"] == [{"name": "input", "datatype": "UINT8",
                                   "shape": [-1, 28, 28, 1]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    tensor = tritonclient.InferInput("input", list(test_images_u8.shape), "UINT8")
    tensor.set_data_from_numpy(test_images_u8, binary_data=False)
    result = client.infer("lenet5", [tensor],
                          outputs=[tritonclient.InferRequestedOutput("output", binary_data=False)])
    expected = inference.load_predictor(finished_runs["lenet"]).predict_stored(test_images_u8)
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-5, atol=1e-6)
    wrong = tritonclient.InferInput("input", [1, 28, 28], "UINT8")
    wrong.set_data_from_numpy(test_images_u8[:1, ..., 0], binary_data=False)
    with pytest.raises(Exception, match=r"inputs\[0\] has shape \[1, 28, 28\]; the model takes "
                                        r"one input tensor UINT8 shaped \[N, 28, 28, 1\]"):
      client.infer("lenet5", [wrong])
  finally:
    assert server.stop() == 0


@pytest.fixture
def test_images_u8(finished_runs):
  return _digits(finished_runs, 5)[..., None]
