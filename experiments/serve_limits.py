"""What the server's limits cost it: memory under an oversized chunked body, and /healthz
latency while clients post large (legal) images.

  python experiments/serve_limits.py --workdir=W   # W: a finished image run (e.g. LeNet-5)

Prints one line per measurement: the server's resident memory before and after a 300 MB
chunked POST (refused with 413 while it arrives), and /healthz's latency (median and worst
of 20) alone and while eight clients each post a 10000x10000 PNG (1 MB of bytes, 100 M
pixels: refused by --max_pixels from the header, decoded in a thread pool otherwise).
"""

import base64
import concurrent.futures
import io
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import httpx
import numpy as np
from absl import app, flags
from PIL import Image

flags.DEFINE_string("workdir", None, "A finished image classification run.", required=True)
FLAGS = flags.FLAGS


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(*args) -> tuple[subprocess.Popen, str]:
  port = _free_port()
  process = subprocess.Popen([sys.executable, "-m", "jaxlearn.serve", f"--port={port}", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f"http://127.0.0.1:{port}"
  for _ in range(600):
    try:
      if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
        return process, url
    except httpx.HTTPError:
      time.sleep(0.2)
  raise SystemExit("the server did not start")


def _rss_mb(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
  return kb / 1024


def _chunks(total: int, size: int = 1 << 20):
  block = b"x" * size
  for _ in range(total // size):
    yield block


def _healthz_ms(url: str, count: int = 20) -> list[float]:
  times = []
  for _ in range(count):
    started = time.perf_counter()
    httpx.get(f"{url}/healthz", timeout=60)
    times.append((time.perf_counter() - started) * 1000)
    time.sleep(0.05)
  return times


def _big_png_b64() -> str:
  png = io.BytesIO()
  Image.fromarray(np.zeros((10000, 10000), np.uint8)).save(png, format="PNG", optimize=True)
  return base64.b64encode(png.getvalue()).decode()


def main(argv):
  del argv
  process, url = _start(f"--workdir={FLAGS.workdir}", "--max_body_bytes=10000000")
  try:
    before = _rss_mb(process.pid)
    try:
      status = httpx.post(f"{url}/v1/models/lenet5:predict", content=_chunks(300 << 20),
                          headers={"content-type": "application/json"}, timeout=120).status_code
    except httpx.HTTPError as e:  # The server may close the connection after its 413.
      status = type(e).__name__
    after = _rss_mb(process.pid)
    print(f"300 MB chunked body: answer {status}; server RSS {before:.0f} MB -> {after:.0f} MB "
          f"(+{after - before:.0f} MB)")
  finally:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)

  encoded = _big_png_b64()
  print(f"10000x10000 PNG: {len(encoded) * 3 // 4 / 1e6:.1f} MB")
  for max_pixels in (40_000_000, 1_000_000_000):
    process, url = _start(f"--workdir={FLAGS.workdir}", f"--max_pixels={max_pixels}",
                          "--max_body_bytes=20000000")
    try:
      alone = _healthz_ms(url)
      answers = []

      def post(url=url, answers=answers):
        answers.append(httpx.post(f"{url}/v1/models/lenet5:predict",
                                  json={"instances": [{"b64": encoded}]}, timeout=300).status_code)

      with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post) for _ in range(8)]
        time.sleep(0.3)
        loaded = _healthz_ms(url)
        concurrent.futures.wait(futures)
      print(f"--max_pixels={max_pixels}: /healthz alone median {statistics.median(alone):.1f} ms "
            f"worst {max(alone):.1f} ms; during 8 uploads median {statistics.median(loaded):.1f} "
            f"ms worst {max(loaded):.1f} ms; upload answers {sorted(answers)}")
    finally:
      process.send_signal(signal.SIGTERM)
      process.wait(timeout=60)


if __name__ == "__main__":
  logging.getLogger("httpx").setLevel(logging.WARNING)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  app.run(main)
