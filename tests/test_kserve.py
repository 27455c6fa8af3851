"""The KServe SDK's own REST clients (v1 and the Open Inference Protocol v2) against
`python -m jaxlearn.serve`, on 127.0.0.1.

The kserve package is large (grpc, kubernetes, pandas), so these run in an environment of
their own: `pytest -m kserve tests/test_kserve.py` after `pip install -e ".[serve]" kserve`
(see .ci/run).
"""

import asyncio

import httpx
import numpy as np
import pytest

from jaxlearn.runs import inference
from tests.test_hardening import _digits
from tests.test_serve import Server

kserve = pytest.importorskip("kserve")
pytestmark = pytest.mark.kserve


@pytest.fixture(scope="module")
def served(finished_runs):
  """(base URL of a server of the LeNet-5 run, 5 test digits as stored, their probabilities)."""
  images = _digits(finished_runs, 5)[..., None]
  expected = inference.load_predictor(finished_runs["lenet"]).predict_stored(images)
  server = Server(f"--workdir={finished_runs['lenet']}")
  try:
    yield f"http://127.0.0.1:{server.port}", images, expected
  finally:
    assert server.stop() == 0


def _talk(protocol: str, conversation):
  """Runs `conversation(client)` with a kserve REST client of `protocol`; its result."""

  async def run():
    client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol=protocol, retries=0,
                                                          timeout=30))
    try:
      return await conversation(client)
    finally:
      await client.close()

  return asyncio.run(run())


def test_kserve_v1_client_checks_liveness_readiness_and_predicts(served):
  base, images, expected = served

  async def conversation(client):
    return (await client.is_server_live(base), await client.is_model_ready(base, "lenet5"),
            await client.infer(base, {"instances": images[..., 0].tolist()}, model_name="lenet5"))

  live, ready, result = _talk("v1", conversation)
  assert live is True and ready is True
  for record, probabilities in zip(result["predictions"], expected, strict=True):
    assert record["top"][0]["class"] == int(probabilities.argmax())
    assert record["top"][0]["probability"] == pytest.approx(probabilities.max(), abs=1e-6)


def test_kserve_v2_client_infers_json_tensors_and_reads_errors(served):
  base, images, expected = served

  async def conversation(client):
    tensor = kserve.InferInput("input", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=False)
    wrong = kserve.InferInput("input", [1, 28, 28], "UINT8")
    wrong.set_data_from_numpy(images[:1, ..., 0], binary_data=False)
    try:
      await client.infer(base, kserve.InferRequest("lenet5", [wrong]), model_name="lenet5")
      error = None
    except httpx.HTTPStatusError as e:
      error = str(e)
    return (await client.is_server_live(base), await client.is_server_ready(base),
            await client.is_model_ready(base, "lenet5"),
            await client.infer(base, kserve.InferRequest("lenet5", [tensor]),
                               model_name="lenet5"), error)

  live, ready, model_ready, response, error = _talk("v2", conversation)
  assert live and ready and model_ready
  [output] = response.outputs
  assert output.name == "output" and output.shape == [5, 10]
  np.testing.assert_allclose(output.as_numpy(), expected, rtol=1e-5, atol=1e-6)
  assert error is not None and "400 Bad Request" in error
  assert ("inputs[0] has shape [1, 28, 28]; the model takes one input tensor UINT8 shaped "
          "[N, 28, 28, 1]") in error
