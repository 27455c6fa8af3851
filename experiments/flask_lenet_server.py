"""The learning path's serving design, as the peer of `python -m jaxlearn.serve`: a Flask app
serving a PyTorch LeNet-5, one image per request.

  python experiments/flask_lenet_server.py --workdir=W --port=8001

The weights are the jaxlearn run's best checkpoint, copied into the PyTorch
model (conv kernels HWIO -> OIHW, dense kernels transposed), so that both
servers answer with the same model. POST /predict takes the body jaxlearn's
:predict route takes, {"instances": [<28x28x1 pixels>]}, and answers the top-5
classes with their softmax probabilities. Flask's own threaded server, as the
tutorial app runs it.
"""

import argparse

from flask import Flask, jsonify, request
import numpy as np
import torch
from torch import nn

from experiments.pytorch_lenet_mnist import lenet5
from jaxlearn.core.paths import path_name
from jaxlearn.runs import finished


def torch_lenet_from_run(workdir: str) -> tuple[nn.Module, np.ndarray, np.ndarray]:
  """The run's LeNet-5 in PyTorch, and the run's normalisation mean and std."""
  run = finished.load_run(workdir)
  flat = {path_name(p): np.asarray(v) for p, v in
          __import__("jax").tree_util.tree_flatten_with_path(run.state.params)[0]}
  model = lenet5()
  layers = {"conv1": model[0], "conv2": model[3], "conv3": model[6], "fc1": model[9],
            "fc2": model[11]}
  with torch.no_grad():
    for name, layer in layers.items():
      kernel = flat[f"{name}/kernel"]
      kernel = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
      layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
      layer.bias.copy_(torch.from_numpy(flat[f"{name}/bias"]))
  model.eval()
  return (model, np.asarray(run.preprocessing["mean"], np.float32),
          np.asarray(run.preprocessing["std"], np.float32))


def create_app(workdir: str) -> Flask:
  model, mean, std = torch_lenet_from_run(workdir)
  app = Flask(__name__)

  @app.post("/predict")
  def predict():
    pixels = np.asarray(request.get_json()["instances"], np.float32)  # (n, 28, 28, 1)
    x = torch.from_numpy((pixels / 255.0 - mean) / std).permute(0, 3, 1, 2)
    with torch.no_grad():
      probabilities = torch.softmax(model(x), dim=1)
    top = probabilities.topk(5, dim=1)
    return jsonify({"predictions": [
        {"top": [{"class": int(c), "name": str(int(c)), "probability": float(p)}
                 for p, c in zip(values, indices)]}
        for values, indices in zip(top.values, top.indices)]})

  return app


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--port", type=int, default=8001)
  args = parser.parse_args()
  create_app(args.workdir).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
  main()
