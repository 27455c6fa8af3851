"""`python -m jaxlearn.serve` as a real process on 127.0.0.1: good and bad requests, batching."""

import base64
import concurrent.futures
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from jaxlearn.deploy import export
from jaxlearn.evaluation import evaluate
from jaxlearn.runs import finished, inference
from tests.conftest import PROJECT_ROOT


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  """The server process, started and waited for until /healthz answers."""

  def __init__(self, *args):
    self.port = _free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_LOG_COMPILES="1", PYTHONUNBUFFERED="1")
    self.process = subprocess.Popen(
        [sys.executable, "-m", "jaxlearn.serve", f"--port={self.port}", *args], cwd=PROJECT_ROOT,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    self.log = []  # stderr lines, read as they come
    threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()
    deadline = time.time() + 120
    while time.time() < deadline:
      if self.process.poll() is not None:
        time.sleep(0.5)
        raise AssertionError("".join(self.log))
      try:
        if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
          return
      except httpx.HTTPError:
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")

  def compiles(self) -> int:
    """Programs compiled so far (JAX_LOG_COMPILES)."""
    return sum("Compiling " in line for line in self.log)

  def stop(self) -> int:
    self.process.send_signal(signal.SIGTERM)
    return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def lenet_server(finished_runs):
  server = Server(f"--workdir={finished_runs['lenet']}", "--max_instances=100",
                  "--max_body_bytes=2000000")
  yield server
  if server.process.poll() is None:
    server.stop()


@pytest.fixture(scope="module")
def test_images(finished_runs):
  run = finished.load_run(finished_runs["lenet"])
  _, stored, _ = evaluate.split_inputs(run, "test")
  return stored[:40], inference.load_predictor(finished_runs["lenet"]).predict_stored(stored[:40])


def _predict(server, instances, name="lenet5"):
  return httpx.post(f"{server.url}/v1/models/{name}:predict", json={"instances": instances},
                    timeout=30)


def test_status_routes_follow_tf_serving(lenet_server):
  status = httpx.get(f"{lenet_server.url}/v1/models/lenet5").json()
  assert status["name"] == "lenet5" and status["ready"] is True
  assert status["input"]["shape"] == [28, 28, 1] and status["class_names"][7] == "7"
  assert httpx.get(f"{lenet_server.url}/v1/models/other").status_code == 404


def test_predictions_equal_the_checkpoint_for_lists_and_image_bytes(lenet_server, test_images):
  images, expected = test_images
  response = _predict(lenet_server, images[:5].tolist())
  assert response.status_code == 200
  predictions = response.json()["predictions"]
  for record, probabilities in zip(predictions, expected):
    assert record["top"][0]["class"] == int(probabilities.argmax())
    assert record["top"][0]["probability"] == pytest.approx(probabilities.max(), abs=1e-6)
  png = io.BytesIO()
  Image.fromarray(images[0, ..., 0]).save(png, format="PNG")
  encoded = base64.b64encode(png.getvalue()).decode()
  by_bytes = _predict(lenet_server, [{"b64": encoded}]).json()["predictions"][0]
  _assert_same_top(by_bytes["top"], predictions[0]["top"])
  upload = httpx.post(f"{lenet_server.url}/predict", files={"file": ("d.png", png.getvalue())})
  _assert_same_top(upload.json()["predictions"][0]["top"], predictions[0]["top"])


def _assert_same_top(got, expected):
  """Same classes in the same order; probabilities equal up to the batch size's rounding."""
  assert [t["class"] for t in got] == [t["class"] for t in expected]
  np.testing.assert_allclose([t["probability"] for t in got],
                             [t["probability"] for t in expected], atol=1e-6)


@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 400, "The body is not valid JSON"),
    (b"", 400, "The body is empty"),
    (b'{"inputs": []}', 400, 'The body must be a JSON object with an "instances" list.'),
    (b'{"instances": [[1, 2, 3]]}', 400, "instances[0]: Got an array shaped (3,); the model "
                                         "takes an image file"),
    (b'{"instances": ["seven"]}', 400, "instances[0]: Got a str instance"),
    (b'{"instances": [{"b64": "@@@"}]}', 400, "instances[0]: An instance's \"b64\" is not "
                                              "valid base64."),
    (b'{"instances": [{"b64": "aGVsbG8="}]}', 400, "is not an image that can be decoded"),
    (b'{"instances": [' + b",".join([b"0"] * 101) + b"]}", 413, "101 instances; this server "
                                                                "takes at most 100"),
    (b'{"instances": [' + b"1," * 1_100_000 + b"1]}", 413, "this server takes at most 2000000"),
])
def test_bad_requests_get_a_4xx_naming_the_problem_and_serving_goes_on(lenet_server, test_images,
                                                                      body, status, message):
  response = httpx.post(f"{lenet_server.url}/v1/models/lenet5:predict", content=body, timeout=30)
  assert response.status_code == status
  assert message in response.json()["error"]
  assert _predict(lenet_server, test_images[0][:1].tolist()).status_code == 200


def test_concurrent_requests_are_batched_without_compiling(lenet_server, test_images):
  images, expected = test_images
  compiled_before = lenet_server.compiles()
  assert compiled_before >= 4  # The batch sizes, compiled at start-up.
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    responses = list(pool.map(lambda i: _predict(lenet_server, [images[i].tolist()]),
                              range(len(images))))
  for response, probabilities in zip(responses, expected):
    assert response.status_code == 200
    assert response.json()["predictions"][0]["top"][0]["probability"] == pytest.approx(
        probabilities.max(), abs=1e-6)
  assert lenet_server.compiles() == compiled_before
  assert lenet_server.stop() == 0


def test_sigterm_finishes_requests_in_flight_then_exits_0(finished_runs, test_images):
  server = Server(f"--workdir={finished_runs['lenet']}")
  images, _ = test_images
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    futures = [pool.submit(_predict, server, images[:8].tolist()) for _ in range(16)]
    time.sleep(0.05)
    code = server.stop()
    statuses = [f.result().status_code for f in futures if f.exception() is None]
  assert code == 0
  assert statuses and all(s == 200 for s in statuses)


def test_ctrl_c_stops_the_server_with_one_line_and_exit_130(finished_runs):
  server = Server(f"--workdir={finished_runs['lenet']}")
  server.process.send_signal(signal.SIGINT)
  assert server.process.wait(timeout=60) == 130
  time.sleep(0.5)  # The reader thread takes the last lines.
  log = "".join(server.log)
  assert "jaxlearn: stopped by SIGINT after finishing the requests in flight." in log
  assert "Traceback" not in log


def test_an_exported_model_serves_the_same_predictions(finished_runs, tmp_path, test_images):
  export.export_run(finished_runs["lenet"], str(tmp_path / "export"))
  server = Server(f"--export_dir={tmp_path / 'export'}", "--model_name=digits")
  try:
    images, expected = test_images
    predictions = _predict(server, images[:3].tolist(), name="digits").json()["predictions"]
    assert [p["top"][0]["class"] for p in predictions] == list(expected[:3].argmax(1))
  finally:
    server.stop()


def test_text_models_take_strings(finished_runs):
  server = Server(f"--workdir={finished_runs['text']}")
  try:
    response = _predict(server, ["a wonderful brilliant film", "awful boring plot"], name="gru")
    names = [p["top"][0]["name"] for p in response.json()["predictions"]]
    assert names == ["positive", "negative"]
    assert "empty string" in _predict(server, [""], name="gru").json()["error"]
  finally:
    server.stop()
