"""Serve a trained model over HTTP, with TF-Serving-style REST routes and a demo page.

  python -m jaxlearn.serve --workdir=W            # a finished run's best checkpoint
  python -m jaxlearn.serve --export_dir=DIR       # or a jaxlearn.export artifact
                           [--port=8000 --host=127.0.0.1 --model_name=lenet5]

The routes and request forms are in `jaxlearn.deploy.serve`. SIGTERM finishes
the requests in flight, then exits 0; Ctrl-C does the same and exits 130.
"""

import sys
import time

from absl import flags

from jaxlearn import cli
from jaxlearn.errors import EXIT_INTERRUPTED, InputError


def main(argv):
  del argv
  from jaxlearn.deploy import serve  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  if bool(values.workdir) == bool(values.export_dir):
    raise InputError("Pass one of --workdir (a finished run) or --export_dir (an export).")
  model = (serve.from_workdir(values.workdir, values.model_name) if values.workdir
           else serve.from_export_dir(values.export_dir, values.model_name))
  sock = serve.bind(values.host, values.port)  # Before compiling, which takes seconds.
  started = time.perf_counter()
  app = serve.create_app(model, max_body_bytes=values.max_body_bytes,
                         max_instances=values.max_instances,
                         max_wait_s=values.max_wait_ms / 1000, max_pixels=values.max_pixels)
  print(f"Serving {model.name} ({model.task}, from {model.source}) on "
        f"http://{values.host}:{values.port}/ ; compiled batch sizes {list(serve.BATCH_SIZES)} "
        f"in {time.perf_counter() - started:.1f} s. POST /v1/models/{model.name}:predict",
        flush=True)
  if serve.serve_until_stopped(app, sock, values.log_level):
    print("\njaxlearn: stopped by SIGINT after finishing the requests in flight.",
          file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "A finished training run's workdir.")
  flags.DEFINE_string("export_dir", None, "A python -m jaxlearn.export --out directory.")
  flags.DEFINE_string("model_name", "", "The NAME in /v1/models/NAME (default: model.name).")
  flags.DEFINE_string("host", "127.0.0.1", "Address to bind; 0.0.0.0 for every interface.")
  flags.DEFINE_integer("port", 8000, "Port to listen on.", lower_bound=1, upper_bound=65535)
  flags.DEFINE_integer("max_body_bytes", 10_000_000, "Largest request body accepted.",
                       lower_bound=1)
  flags.DEFINE_integer("max_instances", 256, "Most instances in one request.", lower_bound=1)
  flags.DEFINE_integer("max_pixels", 40_000_000, "Most pixels the images of one request may "
                       "have (checked from their headers before decoding).", lower_bound=1)
  flags.DEFINE_string("log_level", "warning", "uvicorn's log level.")
  flags.DEFINE_float("max_wait_ms", 0.0, "How long a batch waits for more requests to join "
                     "it (0: only those that queued while the last batch ran).", lower_bound=0)
  cli.run(main, keep_sigterm=True)
