"""Serving throughput and latency: jaxlearn's server against a Flask + PyTorch app, side by side.

  python -m experiments.bench_serving --workdir=W [--seconds=10] [--clients=1,8,32,64]

W is a finished LeNet-5 run (e.g. `python -m jaxlearn.main --config=configs/mnist_lenet.py
--workdir=W`). Both servers run on 127.0.0.1 with the same weights (see
flask_lenet_server.py) and get the same request: one 28x28 MNIST-sized image as a
JSON list, {"instances": [...]}. For each number of concurrent clients, `wrk`
(Debian's package; a C load generator, so the client costs little of the
machine) keeps that many connections busy for --seconds and reports
requests/s, p50/p99 latency and errors (socket errors and non-2xx answers).
The servers run one at a time, the other stopped; both answers are checked
to agree before any load.
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(PROJECT_ROOT, "experiments", "results")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(command: list[str], health_url: str, post_url: str, body: bytes,
          log_path: str) -> subprocess.Popen:
  """Starts a server (its output to `log_path`) and waits until it answers a prediction."""
  import httpx  # pylint: disable=import-outside-toplevel
  with open(log_path, "w", encoding="utf-8") as log:
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=log,
                               env=dict(os.environ, PYTHONPATH=PROJECT_ROOT))
  deadline = time.time() + 180
  while time.time() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f"{command} exited: {open(log_path, encoding='utf-8').read()}")
    try:
      httpx.get(health_url, timeout=1)
      if httpx.post(post_url, content=body, timeout=10,
                    headers={"Content-Type": "application/json"}).status_code == 200:
        return process
    except httpx.HTTPError:
      pass
    time.sleep(0.3)
  raise RuntimeError(f"{command} did not become ready")


def stop(process: subprocess.Popen) -> None:
  process.send_signal(signal.SIGTERM)
  try:
    process.wait(timeout=30)
  except subprocess.TimeoutExpired:
    process.kill()


def run_wrk(url: str, body_path: str, clients: int, seconds: int) -> dict:
  """wrk's figures for `clients` connections posting the body for `seconds`."""
  script = os.path.join(os.path.dirname(body_path), "post.lua")
  with open(script, "w", encoding="utf-8") as f:
    f.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body_path}", "rb")\nwrk.body = f:read("*all")\nf:close()\n')
  out = subprocess.run(["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{seconds}s",
                        "--timeout", "10s", "--latency", "-s", script, url],
                       capture_output=True, text=True, check=True).stdout
  requests = int(re.search(r"(\d+) requests in", out).group(1))
  socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                            r"timeout (\d+)", out)
  non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
  errors = (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0) + (
      int(non_2xx.group(1)) if non_2xx else 0)
  return {"clients": clients, "requests": requests,
          "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
          "p50_ms": _ms(re.search(r"50%\s+(\S+)", out).group(1)),
          "p99_ms": _ms(re.search(r"99%\s+(\S+)", out).group(1)), "errors": errors}


def _ms(text: str) -> float:
  value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
  return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--seconds", type=int, default=10)
  parser.add_argument("--clients", default="1,8,32,64")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  clients = [int(c) for c in args.clients.split(",")]

  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (28, 28, 1)).tolist()
  body = json.dumps({"instances": [image]}).encode()
  scratch = tempfile.mkdtemp()
  body_path = os.path.join(scratch, "body.json")
  with open(body_path, "wb") as f:
    f.write(body)

  servers = {}
  port = free_port()
  servers["jaxlearn"] = ([sys.executable, "-m", "jaxlearn.serve", f"--workdir={args.workdir}",
                          f"--port={port}"], f"http://127.0.0.1:{port}/healthz",
                         f"http://127.0.0.1:{port}/v1/models/lenet5:predict")
  port = free_port()
  servers["flask_pytorch"] = ([sys.executable, "experiments/flask_lenet_server.py",
                               f"--workdir={args.workdir}", f"--port={port}"],
                              f"http://127.0.0.1:{port}/predict",
                              f"http://127.0.0.1:{port}/predict")

  import httpx  # pylint: disable=import-outside-toplevel
  results, answers = {}, {}
  for name, (command, health, url) in servers.items():
    process = start(command, health, url, body, os.path.join(scratch, f"{name}.log"))
    try:
      answers[name] = httpx.post(url, content=body, headers={
          "Content-Type": "application/json"}).json()["predictions"][0]["top"]
      results[name] = []
      for n in clients:
        row = run_wrk(url, body_path, n, args.seconds)
        results[name].append(row)
        print(f"{name:14s} {n:3d} clients: {row['requests_per_s']:8.1f} req/s, p50 "
              f"{row['p50_ms']:7.2f} ms, p99 {row['p99_ms']:7.2f} ms, {row['errors']} errors",
              flush=True)
    finally:
      stop(process)
  same = [t["class"] for t in answers["jaxlearn"]] == [t["class"] for t in
                                                       answers["flask_pytorch"]]
  print(f"Both servers' top-5 classes agree: {same}")
  ratio = {row["clients"]: row["requests_per_s"] / other["requests_per_s"]
           for row, other in zip(results["jaxlearn"], results["flask_pytorch"])}
  print("jaxlearn / Flask+PyTorch requests/s: " +
        ", ".join(f"{n} clients {r:.2f}x" for n, r in ratio.items()))
  record = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "seconds": args.seconds,
            "answers_agree": same, "results": results, "ratio": ratio}
  out = args.out or os.path.join(RESULTS, f"bench_serving_{record['date']}.json")
  with open(out, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  print(f"Wrote {out}")


if __name__ == "__main__":
  main()
