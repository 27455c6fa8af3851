"""Datasets that fetch themselves: canonical URLs or a mirror, checksums, atomic files.

When a dataset's files are not in ROOT/<name>/ (ROOT: `config.data.dir`,
$JAXLEARN_DATA_DIR, else the cache ~/.cache/jaxlearn/data), `fetch` downloads
them there, as Keras and torchvision do: each file is streamed into a hidden
temporary file beside its final place, its MD5 is checked against the published
one, and only then is it renamed into place, so an interrupted or corrupt
download never leaves a file that later counts as data. Archives (CIFAR-10,
IMDB, SST-2) are unpacked the same way, into a temporary folder renamed when
complete. A dropped connection is retried; an offline machine gets an error
that says how to point at local files.

A mirror (`config.data.mirror` or $JAXLEARN_DATA_MIRROR) replaces the canonical
locations: a file is then fetched from MIRROR/<dataset>/<file name>, the layout
of a data root (MNIST's four .gz files, SST-2's train.tsv and dev.tsv, CIFAR-10's
and IMDB's archives).
"""

import hashlib
import http.client
import os
import socket
import tarfile
import tempfile
import time
from typing import NamedTuple
import urllib.error
import urllib.request
import zipfile

from jaxlearn.errors import DataError

MIRROR_ENV = "JAXLEARN_DATA_MIRROR"
ATTEMPTS = 3  # per file; a dropped or refused connection is retried after 1 s, then 2 s
TIMEOUT_S = 30  # per blocking read
CHUNK_BYTES = 1 << 20


class RemoteFile(NamedTuple):
  name: str  # as a data root and a mirror hold it: <root>/<dataset>/<name>
  md5: str  # the published checksum
  url: str  # the canonical location
  unpack: bool = False  # an archive, unpacked into the dataset's folder


def _files(base_url: str, md5s: dict[str, str]) -> tuple[RemoteFile, ...]:
  return tuple(RemoteFile(name, md5, base_url + name) for name, md5 in md5s.items())


MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# What `fetch` downloads for each dataset, and (when different) what a mirror holds.
REMOTE = {
    "mnist": _files(MNIST_URL, {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion_mnist": _files(FASHION_MNIST_URL, {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar10": (RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530",
                           "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", True),),
    "imdb": (RemoteFile("aclImdb_v1.tar.gz", "7c2ac02c03563afcf9b574c7e56c153a",
                        "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz", True),),
    "sst2": (RemoteFile("SST-2.zip", "9f81648d4199384278b86e315dac217c",
                        "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip", True),),
}
MIRRORED = {
    # GLUE's two labelled SST-2 files as a data root holds them (no official checksums; these
    # are the files' own, see the README's data section).
    "sst2": (RemoteFile("train.tsv", "da409a0a939379ed32a470bc0f7fe99a", ""),
             RemoteFile("dev.tsv", "268856b487b2a31a28c0a93daaff7288", "")),
}


def default_root() -> str:
  """$XDG_CACHE_HOME/jaxlearn/data, by default ~/.cache/jaxlearn/data."""
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "jaxlearn", "data")


def mirror_of(data_config) -> str:
  return data_config.get("mirror", "") or os.environ.get(MIRROR_ENV, "")


def fetch(name: str, directory: str, mirror: str = "", how_to_get=None) -> None:
  """Downloads dataset `name`'s files into `directory` (see the module doc).

  `how_to_get(reason)` words the error when it cannot (offline, refused, corrupt).
  """
  files = MIRRORED.get(name, REMOTE[name]) if mirror else REMOTE[name]
  os.makedirs(directory, exist_ok=True)
  for remote in files:
    url = f"{mirror.rstrip('/')}/{name}/{remote.name}" if mirror else remote.url
    path = os.path.join(directory, remote.name)
    if not os.path.exists(path):
      try:
        _download(url, path, remote.md5)
      except DataError as e:
        raise DataError(how_to_get(str(e)) if how_to_get else str(e)) from e
    if remote.unpack:
      unpack(path, directory)


def _download(url: str, path: str, md5: str) -> None:
  """`url` into `path`, checked against `md5`, retried on a dropped connection."""
  for attempt in range(1, ATTEMPTS + 1):
    try:
      _download_once(url, path, md5)
      return
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
            socket.timeout, OSError) as e:
      if isinstance(e, urllib.error.HTTPError) and e.code < 500:
        raise DataError(f"{url} answered HTTP {e.code} ({e.reason})") from e
      if attempt == ATTEMPTS:
        raise DataError(f"downloading {url} failed {ATTEMPTS} times, last with "
                        f"{e.__class__.__name__}: {_reason(e)}") from e
      time.sleep(attempt)


def _reason(error: Exception) -> str:
  return str(getattr(error, "reason", None) or error) or "no reason given"


def _download_once(url: str, path: str, md5: str) -> None:
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  directory, name = os.path.split(path)
  digest = hashlib.md5()
  try:
    handle, partial = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
  except OSError as e:
    raise DataError(f"cannot write into {directory} ({e})") from e
  try:
    with os.fdopen(handle, "wb") as out, \
        urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
      total = int(response.headers.get("Content-Length") or 0) or None
      with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {name}",
                disable=None, leave=False) as bar:
        received = 0
        while chunk := response.read(CHUNK_BYTES):
          out.write(chunk)
          digest.update(chunk)
          bar.update(len(chunk))
          received += len(chunk)
    if total is not None and received < total:  # The server closed the connection early.
      raise http.client.IncompleteRead(b"", total - received)
    if digest.hexdigest() != md5:
      raise DataError(f"{url} has MD5 {digest.hexdigest()}, not the published {md5}: the "
                      "download is corrupt or the server holds another file; nothing was kept")
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def unpack(archive: str, directory: str) -> None:
  """Unpacks `archive` into `directory`, each top-level entry renamed into place whole.

  Entries already there are kept (a finished earlier unpack). Members that would
  land outside `directory` (absolute paths, '..', links out) are refused.
  """
  with tempfile.TemporaryDirectory(dir=directory, prefix=".unpacking.") as scratch:
    try:
      if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
          for member in z.namelist():
            _check_member(member, archive)
          z.extractall(scratch)
      else:
        with tarfile.open(archive) as t:
          t.extractall(scratch, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
      raise DataError(f"{archive} cannot be unpacked ({e}); delete it so that it is "
                      "downloaded again.") from e
    for entry in os.listdir(scratch):
      target = os.path.join(directory, entry)
      if not os.path.exists(target):
        os.replace(os.path.join(scratch, entry), target)


def _check_member(member: str, archive: str) -> None:
  if os.path.isabs(member) or ".." in member.replace("\\", "/").split("/"):
    raise DataError(f"{archive} holds {member!r}, a path outside the folder it unpacks into; "
                    "refused. The archive is not the published one.")

