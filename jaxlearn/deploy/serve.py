"""Serve a trained model over HTTP, with TF-Serving-style REST routes and a demo page.

The library part of `python -m jaxlearn.serve --workdir=W` (or `--export_dir=DIR`):

Routes (NAME is --model_name, by default the run's model.name), TF Serving's and KServe v1's:
  GET  /healthz                      {"status": "ok"}
  GET  /v1/models/NAME               {"name", "ready": true, "task", "input", "class_names", ...}
  POST /v1/models/NAME:predict       {"instances": [...]} -> {"predictions": [...]}
  POST /predict                      a multipart image upload (field "file")
  GET  /                             a demo page for a browser; {"status": "alive"} for a
                                     client asking for JSON (KServe v1's liveness)
and the Open Inference Protocol (KServe v2, Triton's HTTP/REST API, JSON tensors):
  GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready
  POST /v2/models/NAME/infer         {"inputs": [{"name", "shape": [N, ...], "datatype", "data"}]}
                                     -> {"outputs": [{"name": "output", "shape", "data", ...}]}

An instance is one raw input: a nested list of pixels or numbers, {"b64": "..."}
image bytes, a string for text models, or a {column: value} row for tables.
Each prediction is shaped as `jaxlearn.predict --json` prints it. Concurrent
requests are batched into one compiled call (padded to a few fixed sizes,
all compiled at start-up, so no request waits for a compilation); SIGTERM
finishes the requests in flight, then exits 0. Bad requests get a 4xx JSON
{"error": "..."} naming the problem, and the server keeps serving.
"""

import asyncio
import base64
import binascii
import json
import os
import signal
import time
from typing import Callable, NamedTuple

import numpy as np

from jaxlearn.deploy import artifact
from jaxlearn.errors import InputError
from jaxlearn.runs import inference, inputs as inputs_lib

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)  # Compiled at start-up; a batch is padded up to the next.
# The pixels of the images one request may carry (--max_pixels), checked from their headers
# before decoding: forty 1000x1000 photos. Decoding runs in this many threads.
MAX_PIXELS = 40_000_000
DECODE_THREADS = 4
PAGE = os.path.join(os.path.dirname(__file__), "serve_page.html")


class ServedModel(NamedTuple):
  """What the server needs of a model, whether from a workdir or an export directory."""
  name: str
  task: str
  spec: inputs_lib.InputSpec
  class_names: list[str]
  call: Callable[[np.ndarray], np.ndarray]  # stored inputs (batch, ...) -> outputs
  source: str


def from_workdir(workdir: str, name: str = "") -> ServedModel:
  predictor = inference.load_predictor(workdir)
  return ServedModel(name or predictor.run.config.model.name, predictor.task, predictor.spec,
                     predictor.class_names, predictor.predict_stored, os.path.abspath(workdir))


def from_export_dir(directory: str, name: str = "") -> ServedModel:
  program, metadata = artifact.load(directory)
  spec = inputs_lib.InputSpec.from_preprocessing(metadata["preprocessing"])
  import jax  # pylint: disable=import-outside-toplevel
  call = jax.jit(program.call)
  return ServedModel(name or metadata["model"], metadata["task"], spec,
                     metadata["class_names"], lambda x: np.asarray(call(x)),
                     os.path.abspath(directory))


class Batcher:
  """Runs the instances of concurrent requests together, in one compiled call.

  While one batch runs, the requests that arrive queue up and form the next
  one; `max_wait_s` > 0 also holds a batch back that long for more to join
  (more throughput, more latency). A batch is padded to the next of `sizes`,
  so only those shapes ever run.
  """

  def __init__(self, call, spec: inputs_lib.InputSpec, sizes=BATCH_SIZES,
               max_wait_s: float = 0.0):
    self._call, self._spec, self.sizes, self._max_wait = call, spec, tuple(sizes), max_wait_s
    self._queue: asyncio.Queue | None = None
    self._task = None

  def warm_up(self) -> float:
    """Compiles every batch size now; returns the seconds it took."""
    started = time.perf_counter()
    for size in self.sizes:
      self._call(np.zeros((size, *self._spec.shape), self._spec.dtype))
    return time.perf_counter() - started

  def start(self) -> None:
    self._queue = asyncio.Queue()
    self._task = asyncio.get_running_loop().create_task(self._serve())

  async def stop(self) -> None:
    if self._task is not None:
      self._task.cancel()

  async def run(self, stored: np.ndarray) -> np.ndarray:
    """Outputs for `stored` (any number of instances; split into batches when needed)."""
    futures = []
    for start in range(0, len(stored), self.sizes[-1]):
      future = asyncio.get_running_loop().create_future()
      self._queue.put_nowait((stored[start:start + self.sizes[-1]], future))
      futures.append(future)
    return np.concatenate(await asyncio.gather(*futures))

  async def _serve(self) -> None:
    loop = asyncio.get_running_loop()
    largest = self.sizes[-1]
    pending = None
    while True:
      batch = [pending or await self._queue.get()]
      pending = None
      count = len(batch[0][0])
      deadline = loop.time() + self._max_wait
      while count < largest:
        try:
          item = self._queue.get_nowait() if loop.time() >= deadline else await asyncio.wait_for(
              self._queue.get(), deadline - loop.time())
        except (asyncio.QueueEmpty, asyncio.TimeoutError):
          break
        if count + len(item[0]) > largest:
          pending = item
          break
        batch.append(item)
        count += len(item[0])
      await self._run_batch(loop, batch, count)

  async def _run_batch(self, loop, batch, count: int) -> None:
    size = next(s for s in self.sizes if s >= count)
    stored = np.concatenate([x for x, _ in batch])
    padded = np.concatenate([stored, np.zeros((size - count, *stored.shape[1:]), stored.dtype)])
    try:
      outputs = await loop.run_in_executor(None, self._call, padded)
    except Exception as e:  # pylint: disable=broad-except  # Reported to each waiting request.
      for _, future in batch:
        if not future.done():
          future.set_exception(e)
      return
    start = 0
    for x, future in batch:
      if not future.done():
        future.set_result(outputs[start:start + len(x)])
      start += len(x)


# Stored dtypes as the Open Inference Protocol names them.
V2_DATATYPES = {"uint8": "UINT8", "int32": "INT32", "float32": "FP32"}


def v2_tensor(payload, spec: inputs_lib.InputSpec, max_instances: int) -> np.ndarray:
  """The one input tensor of an Open Inference Protocol request, checked against the model."""
  dims = ", ".join(map(str, spec.shape))
  wanted = f"one input tensor {V2_DATATYPES[spec.dtype]} shaped [N, {dims}]"
  tensors = payload.get("inputs") if isinstance(payload, dict) else None
  if not isinstance(tensors, list) or len(tensors) != 1 or not isinstance(tensors[0], dict):
    raise InputError(f'The body must be {{"inputs": [...]}} with {wanted}.')
  tensor = tensors[0]
  shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
  if datatype != V2_DATATYPES[spec.dtype]:
    raise InputError(f"inputs[0] has datatype {datatype!r}; the model takes {wanted}.")
  if not isinstance(shape, list) or tuple(shape[1:]) != spec.shape or not shape or \
      not isinstance(shape[0], int) or shape[0] < 1:
    raise InputError(f"inputs[0] has shape {shape}; the model takes {wanted}.")
  if shape[0] > max_instances:
    raise InputError(f"inputs[0] holds {shape[0]} examples; this server takes at most "
                     f"{max_instances} per request (--max_instances).")
  try:
    array = np.asarray(data, spec.dtype)
  except (TypeError, ValueError, OverflowError) as e:
    raise InputError(f"inputs[0].data is not a list of numbers ({e}); the model takes {wanted}."
                     ) from e
  if array.size != int(np.prod(shape)):
    raise InputError(f"inputs[0].data holds {array.size} values; shape {shape} needs "
                     f"{int(np.prod(shape))}.")
  return array.reshape(shape)


def _version() -> str:
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  try:
    return metadata.version("jaxlearn")
  except metadata.PackageNotFoundError:
    return "unknown"


def decode_instance(instance, spec: inputs_lib.InputSpec,
                    max_pixels: int = 0) -> tuple[np.ndarray, list[str], int]:
  """One JSON instance -> (a stored example, its notes, the pixels decoded for it).

  See the module docstring for the forms. `max_pixels` > 0 refuses a "b64"
  image with more pixels, from its header, before it is decoded.
  """
  if isinstance(instance, dict) and set(instance) == {"b64"} and spec.kind == "image":
    try:
      data = base64.b64decode(instance["b64"], validate=True)
    except (binascii.Error, TypeError, ValueError) as e:
      raise InputError("An instance's \"b64\" is not valid base64.") from e
    image = inputs_lib.image_from_bytes(data, "An instance's \"b64\" image", max_pixels)
    return (*inputs_lib.encode(image, spec), image.size[0] * image.size[1])
  if spec.kind in ("image", "features"):
    if isinstance(instance, (str, dict)) or instance is None:
      forms = ' as a nested list, or {"b64": ...} image bytes' if spec.kind == "image" else (
          " as a nested list")
      raise InputError(f"Got a {type(instance).__name__} instance; the model takes "
                       f"{spec.describe()}{forms}.")
    try:
      array = np.asarray(instance)
    except ValueError as e:
      raise InputError(f"An instance is a ragged list; the model takes {spec.describe()}.") from e
    if array.dtype.kind not in "iuf":
      raise InputError(f"An instance holds {array.dtype} values; the model takes "
                       f"{spec.describe()}.")
    return (*inputs_lib.encode(array, spec), int(array.size))
  return (*inputs_lib.encode(instance, spec), 0)


def _json_codec():
  """(loads, dumps to bytes): orjson where installed (the serve extra; ~4x faster), else json."""
  try:
    import orjson  # pylint: disable=import-outside-toplevel
    return orjson.loads, orjson.dumps
  except ImportError:
    return json.loads, lambda value: json.dumps(value).encode()


def create_app(model: ServedModel, *, max_body_bytes: int = 10_000_000,
               max_instances: int = 256, batch_sizes=BATCH_SIZES, max_wait_s: float = 0.0,
               max_pixels: int = MAX_PIXELS):
  """The FastAPI application serving `model`.

  Requests are decoded in a pool of threads, off the event loop, so that one
  large image never holds up `/healthz` or the other requests; `max_pixels`
  bounds the pixels one request's images may have (413 past it).
  """
  import concurrent.futures  # pylint: disable=import-outside-toplevel
  import contextlib  # pylint: disable=import-outside-toplevel
  from fastapi import FastAPI, Request  # pylint: disable=import-outside-toplevel
  from fastapi import responses  # pylint: disable=import-outside-toplevel

  loads, dumps = _json_codec()

  batcher = Batcher(model.call, model.spec, batch_sizes, max_wait_s)
  batcher.warm_up()
  decoders = concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, "jaxlearn-decode")

  def decode_all(instances: list) -> list:
    encoded, left = [], max_pixels
    for i, instance in enumerate(instances):
      try:
        x, notes, pixels = decode_instance(instance, model.spec, max(left, 1) if max_pixels else 0)
      except InputError as e:
        raise type(e)(f"instances[{i}]: {e}") from None
      left -= pixels
      encoded.append((x, notes))
    return encoded

  async def off_the_loop(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(decoders, fn, *args)

  @contextlib.asynccontextmanager
  async def lifespan(app):
    del app
    batcher.start()
    yield
    await batcher.stop()
    decoders.shutdown(wait=False, cancel_futures=True)

  app = FastAPI(title=f"jaxlearn: {model.name}", lifespan=lifespan, docs_url=None,
                redoc_url=None)

  def error(status: int, message: str) -> responses.JSONResponse:
    return responses.JSONResponse({"error": message}, status_code=status)

  async def predictions(instances: list) -> list[dict]:
    encoded = await off_the_loop(decode_all, instances)
    outputs = await batcher.run(np.stack([x for x, _ in encoded]))
    records = inference.describe(outputs, model.task, model.class_names, top_k=5)
    return [{**r, **({"notes": notes} if notes else {})} for r, (_, notes) in zip(records, encoded)]

  async def read_body(request: Request) -> bytes:
    """The body, counted as it arrives: a chunked body is cut off at the limit, not held."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
      raise _TooLarge(f"{declared} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
      size += len(chunk)
      if size > max_body_bytes:
        raise _TooLarge(f"over {max_body_bytes} bytes")
      chunks.append(chunk)
    request._body = b"".join(chunks)  # pylint: disable=protected-access  # For request.form().
    return request._body  # pylint: disable=protected-access

  @app.exception_handler(_TooLarge)
  async def too_large(request, e):
    del request
    return error(413, f"The body is {e.size}; this server takes at most {max_body_bytes} "
                 "(--max_body_bytes).")

  @app.exception_handler(inputs_lib.TooManyPixels)
  async def too_many_pixels(request, e):
    del request
    return error(413, str(e))

  @app.exception_handler(InputError)
  async def bad_input(request, e):
    del request
    return error(400, str(e))

  # The Open Inference Protocol (KServe v2, Triton's HTTP API): tensors as stored in, the
  # model's outputs (probabilities, or values) out, as JSON.
  v2_input = {"name": "input", "datatype": V2_DATATYPES[model.spec.dtype],
              "shape": [-1, *model.spec.shape]}
  output_width = len(model.class_names) if model.task == "classification" else None
  v2_output = {"name": "output", "datatype": "FP32",
               "shape": [-1] + ([output_width] if output_width else [])}

  def v2_model_or_404(name: str):
    return None if name == model.name else error(
        404, f"No model {name!r}; this server serves {model.name!r}.")

  @app.get("/v2")
  async def v2_server():
    return {"name": "jaxlearn", "version": _version(), "extensions": []}

  @app.get("/v2/health/live")
  async def v2_live():
    return {"live": True}

  @app.get("/v2/health/ready")
  async def v2_ready():
    return {"ready": True}

  @app.get("/v2/models/{name}")
  async def v2_model(name: str):
    return v2_model_or_404(name) or {"name": model.name, "versions": ["1"], "platform": "jax",
                                     "inputs": [v2_input], "outputs": [v2_output]}

  @app.get("/v2/models/{name}/ready")
  async def v2_model_ready(name: str):
    return v2_model_or_404(name) or {"name": model.name, "ready": True}

  @app.post("/v2/models/{name}/infer")
  async def v2_infer(name: str, request: Request):
    missing = v2_model_or_404(name)
    if missing:
      return missing
    body = await read_body(request)
    try:
      payload = loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      return error(400, f"The body is not valid JSON ({e}); send {{\"inputs\": [...]}} "
                   "(binary tensors are not supported: use binary_data=False).")
    stored = v2_tensor(payload, model.spec, max_instances)
    outputs = np.asarray(await batcher.run(stored), np.float32)
    result = {"model_name": model.name, "model_version": "1",
              "outputs": [{**v2_output, "shape": list(outputs.shape),
                           "data": outputs.ravel().tolist()}]}
    if isinstance(payload.get("id"), str):
      result["id"] = payload["id"]
    return responses.Response(dumps(result), media_type="application/json")

  @app.get("/healthz")
  async def healthz():
    return {"status": "ok"}

  @app.get("/v1/models/{name}")
  async def status(name: str):
    if name != model.name:
      return error(404, f"No model {name!r}; this server serves {model.name!r}.")
    return {"name": model.name, "ready": True, "task": model.task,
            "input": {"kind": model.spec.kind, "shape": list(model.spec.shape),
                      "dtype": model.spec.dtype, "description": model.spec.describe()},
            "class_names": model.class_names, "source": model.source,
            "batch_sizes": list(batcher.sizes),
            "model_version_status": [{"version": "1", "state": "AVAILABLE"}]}

  @app.post("/v1/models/{target}")
  async def predict(target: str, request: Request):
    name, _, verb = target.rpartition(":")
    if verb != "predict" or name != model.name:
      return error(404, f"POST /v1/models/{model.name}:predict is the prediction route.")
    body = await read_body(request)
    if not body.strip():
      return error(400, 'The body is empty; send {"instances": [...]} as JSON.')
    try:
      payload = loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      return error(400, f"The body is not valid JSON ({e}); send {{\"instances\": [...]}}.")
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
      return error(400, 'The body must be a JSON object with an "instances" list.')
    instances = payload["instances"]
    if not instances:
      return error(400, '"instances" is empty; send at least one.')
    if len(instances) > max_instances:
      return error(413, f"{len(instances)} instances; this server takes at most {max_instances} "
                   "per request (--max_instances).")
    return responses.Response(dumps({"predictions": await predictions(instances)}),
                    media_type="application/json")

  @app.post("/predict")
  async def predict_upload(request: Request):
    if model.spec.kind != "image":
      return error(400, f"POST /predict takes an image upload; this model takes "
                   f"{model.spec.describe()}: use POST /v1/models/{model.name}:predict.")
    await read_body(request)
    try:
      form = await request.form()
    except Exception as e:  # pylint: disable=broad-except  # Starlette raises several kinds.
      return error(400, f"The body is not a multipart form ({e}); send the image as field "
                   "\"file\".")
    upload = form.get("file")
    if upload is None or not hasattr(upload, "read"):
      return error(400, 'No file in the form; send the image as multipart field "file".')
    data = await upload.read()
    stored, notes = await off_the_loop(lambda: inputs_lib.encode(inputs_lib.image_from_bytes(
        data, f"The upload {upload.filename!r}", max_pixels), model.spec))
    outputs = await batcher.run(stored[None])
    record = inference.describe(outputs, model.task, model.class_names, top_k=5)[0]
    return {"predictions": [{**record, **({"notes": notes} if notes else {})}]}

  @app.get("/")
  async def page(request: Request):
    """The demo page for a browser; KServe's v1 liveness answer for a client asking for JSON."""
    if "text/html" not in request.headers.get("accept", ""):
      return {"status": "alive"}
    with open(PAGE, encoding="utf-8") as f:
      html = f.read()
    info = {"name": model.name, "task": model.task, "kind": model.spec.kind,
            "shape": list(model.spec.shape), "class_names": model.class_names}
    return responses.HTMLResponse(html.replace("/*MODEL*/null", json.dumps(info)))

  return app


class _TooLarge(Exception):

  def __init__(self, size: str):
    super().__init__(size)
    self.size = size  # e.g. "12000000 bytes", "over 10000000 bytes"


def bind(host: str, port: int):
  """The listening socket the server will use, bound now (before compiling, which takes
  seconds), so "Serving on" is printed only for a port that really is ours.

  Raises an InputError when `port` on `host` cannot be bound (in use, or not an address).
  """
  import socket  # pylint: disable=import-outside-toplevel
  try:
    return socket.create_server((host, port), reuse_port=False)
  except (OSError, OverflowError) as e:
    reason = getattr(e, "strerror", None) or e
    raise InputError(f"Cannot listen on {host}:{port} ({reason}); another server may "
                     "be using the port: pass another --port, or stop that server.") from e


def serve_until_stopped(app, sock, log_level: str = "warning") -> bool:
  """Runs `app` with uvicorn on the bound `sock` until SIGTERM or Ctrl-C; True if it was
  Ctrl-C (SIGINT).

  uvicorn drains the requests in flight on either signal, then raises the
  signal again for the handler it found: these, which only note it.
  """
  import uvicorn  # pylint: disable=import-outside-toplevel
  received = []
  for stop_signal in (signal.SIGINT, signal.SIGTERM):
    signal.signal(stop_signal, lambda signum, _: received.append(signum))
  host, port = sock.getsockname()[:2]
  config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
  uvicorn.Server(config).run(sockets=[sock])
  return signal.SIGINT in received
