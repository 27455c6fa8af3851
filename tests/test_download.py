"""Datasets that fetch themselves, tested against a local HTTP mirror of the real files."""

import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile

import ml_collections
import numpy as np
import pytest

from jaxlearn import data
from jaxlearn.config import default_config
from jaxlearn.data import download
from jaxlearn.errors import DataError
from tests.conftest import PROJECT_ROOT, real_data_dir


class _Mirror(http.server.SimpleHTTPRequestHandler):
  """Serves the mirror folder; `drops[path]` times it cuts a file off halfway instead."""
  requests: list = []
  drops: dict = {}

  def do_GET(self):  # pylint: disable=invalid-name
    self.requests.append(self.path)
    if self.drops.get(self.path, 0) > 0:
      self.drops[self.path] -= 1
      body = open(self.translate_path(self.path), "rb").read()
      self.send_response(200)
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      self.wfile.write(body[:len(body) // 2])
      self.wfile.flush()
      self.close_connection = True
      return
    super().do_GET()

  def log_message(self, *args):  # Quiet.
    pass


@pytest.fixture
def mirror(tmp_path):
  """(url, folder, handler class): an HTTP server on 127.0.0.1 serving `folder`."""
  folder = tmp_path / "mirror"
  folder.mkdir()
  handler = type("Handler", (_Mirror,), {"requests": [], "drops": {}})
  server = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_address[1]}", folder, handler
  server.shutdown()
  server.server_close()


def _copy_real(dataset: str, folder) -> None:
  source = os.path.join(real_data_dir(), dataset)
  if not os.path.isdir(source):
    pytest.skip(f"real {dataset} not found under {real_data_dir()}")
  shutil.copytree(source, folder / dataset)


def _config(name: str, root, url: str, **fields) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(default_config().data.to_dict())
  config.update(name=name, dir=str(root), mirror=url, **fields)
  return config


def _md5(path) -> str:
  return hashlib.md5(open(path, "rb").read()).hexdigest()


def _leftovers(directory) -> list:
  return [f for f in os.listdir(directory) if f.startswith(".")]


def test_mnist_is_downloaded_checked_and_then_read_from_the_cache(mirror, tmp_path):
  url, folder, handler = mirror
  _copy_real("mnist", folder)
  config = _config("mnist", tmp_path / "root", url)
  raw = data.load_raw(config)
  assert raw.train[0].shape == (60000, 28, 28, 1) and raw.test[0].shape == (10000, 28, 28, 1)
  cached = tmp_path / "root" / "mnist"
  assert {f: _md5(cached / f) for f in os.listdir(cached)} == {
      f.name: f.md5 for f in download.REMOTE["mnist"]}
  assert sorted(handler.requests) == sorted(f"/mnist/{f.name}" for f in download.REMOTE["mnist"])
  again = data.load_raw(config)
  assert len(handler.requests) == 4  # Read from the cache, not fetched again.
  np.testing.assert_array_equal(again.train[1], raw.train[1])


def test_a_corrupt_file_is_refused_and_not_kept(mirror, tmp_path):
  url, folder, _ = mirror
  _copy_real("mnist", folder)
  labels = folder / "mnist" / "t10k-labels-idx1-ubyte.gz"
  corrupt = bytearray(labels.read_bytes())
  corrupt[100] ^= 0xFF
  labels.write_bytes(bytes(corrupt))
  with pytest.raises(DataError, match=(
      rf"No mnist data: its files are not in .*, and {url}/mnist/t10k-labels-idx1-ubyte.gz has "
      r"MD5 [0-9a-f]{32}, not the published ec29112dd5afa0611ce80d1b7f02629c: the download is "
      r"corrupt or the server holds another file; nothing was kept\. Put the four IDX files")):
    data.load_raw(_config("mnist", tmp_path / "root", url))
  cached = tmp_path / "root" / "mnist"
  assert "t10k-labels-idx1-ubyte.gz" not in os.listdir(cached) and not _leftovers(cached)


def test_a_dropped_connection_is_retried_then_named(mirror, tmp_path):
  url, folder, handler = mirror
  _copy_real("mnist", folder)
  handler.drops["/mnist/train-labels-idx1-ubyte.gz"] = 1  # Once: the retry gets it.
  raw = data.load_raw(_config("mnist", tmp_path / "ok", url))
  assert handler.requests.count("/mnist/train-labels-idx1-ubyte.gz") == 2
  assert len(raw.train[1]) == 60000
  handler.drops["/mnist/train-labels-idx1-ubyte.gz"] = 99  # Always.
  with pytest.raises(DataError, match=(
      rf"downloading {url}/mnist/train-labels-idx1-ubyte.gz failed 3 times, last with "
      r"IncompleteRead")):
    data.load_raw(_config("mnist", tmp_path / "dropped", url))
  cached = tmp_path / "dropped" / "mnist"
  assert "train-labels-idx1-ubyte.gz" not in os.listdir(cached) and not _leftovers(cached)


def test_an_interrupted_download_leaves_no_file(mirror, tmp_path, monkeypatch):
  url, folder, _ = mirror
  _copy_real("mnist", folder)
  import tqdm  # pylint: disable=import-outside-toplevel

  def interrupt(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(download, "CHUNK_BYTES", 4096)
  monkeypatch.setattr(tqdm.tqdm, "update", interrupt)
  with pytest.raises(KeyboardInterrupt):
    data.load_raw(_config("mnist", tmp_path / "root", url))
  assert os.listdir(tmp_path / "root" / "mnist") == []


def test_sst2_is_downloaded_from_a_mirror_of_the_data_folder(mirror, tmp_path):
  url, folder, _ = mirror
  _copy_real("sst2", folder)
  raw = data.load_raw(_config("sst2", tmp_path / "root", url))
  assert len(raw.train[1]) == 67349 and len(raw.test[1]) == 872


def _tar_gz(members: dict[str, bytes]) -> bytes:
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    for name, content in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))
  return buffer.getvalue()


def test_an_archive_is_checked_then_unpacked_whole(mirror, tmp_path, monkeypatch):
  url, folder, _ = mirror
  rng = np.random.default_rng(0)
  record = lambda n: np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(
      0, 256, (n, 3072))], axis=1).astype(np.uint8).tobytes()
  batches = {f"cifar-10-batches-bin/data_batch_{i}.bin": record(4) for i in range(1, 6)}
  archive = _tar_gz({**batches, "cifar-10-batches-bin/test_batch.bin": record(3)})
  (folder / "cifar10").mkdir()
  (folder / "cifar10" / "cifar-10-binary.tar.gz").write_bytes(archive)
  published = download.REMOTE["cifar10"][0]
  monkeypatch.setitem(download.REMOTE, "cifar10", (
      published._replace(md5=hashlib.md5(archive).hexdigest()),))
  raw = data.load_raw(_config("cifar10", tmp_path / "root", url))
  assert raw.train[0].shape == (20, 32, 32, 3) and raw.test[0].shape == (3, 32, 32, 3)
  assert sorted(os.listdir(tmp_path / "root" / "cifar10")) == [
      "cifar-10-batches-bin", "cifar-10-binary.tar.gz"]


def test_archive_members_outside_the_folder_are_refused(tmp_path):
  (tmp_path / "out").mkdir()
  evil_tar = tmp_path / "evil.tar.gz"
  evil_tar.write_bytes(_tar_gz({"../escaped.txt": b"x"}))
  with pytest.raises(DataError, match="cannot be unpacked .*outside the destination"):
    download.unpack(str(evil_tar), str(tmp_path / "out"))
  evil_zip = tmp_path / "evil.zip"
  with zipfile.ZipFile(evil_zip, "w") as z:
    z.writestr("../escaped.txt", "x")
  with pytest.raises(DataError, match="holds '../escaped.txt', a path outside the folder"):
    download.unpack(str(evil_zip), str(tmp_path / "out"))
  assert not (tmp_path / "escaped.txt").exists() and os.listdir(tmp_path / "out") == []


def test_the_quick_start_needs_no_data_folder(mirror, tmp_path):
  """`python -m jaxlearn.main --config=configs/mnist_lenet.py` with no JAXLEARN_DATA_DIR."""
  url, folder, _ = mirror
  _copy_real("mnist", folder)
  env = {k: v for k, v in os.environ.items() if k != "JAXLEARN_DATA_DIR"}
  env.update(JAXLEARN_DATA_MIRROR=url, XDG_CACHE_HOME=str(tmp_path / "cache"))
  result = subprocess.run(
      [sys.executable, "-m", "jaxlearn.main", "--config=configs/mnist_lenet.py",
       f"--workdir={tmp_path / 'run'}", "--config.num_epochs=1",
       "--config.data.max_train_examples=2000", "--config.progress_bar=False"],
      cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Test, best checkpoint: accuracy" in result.stdout
  cached = tmp_path / "cache" / "jaxlearn" / "data" / "mnist"
  assert sorted(os.listdir(cached)) == sorted(f.name for f in download.REMOTE["mnist"])
