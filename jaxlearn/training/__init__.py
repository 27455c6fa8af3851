"""The training loop and its policies: `train.train_and_evaluate(config, workdir)`.

`compiled` makes the programs, `epoch` runs them, `progress` records each
epoch, `policies` decides after each validation (best checkpoint, divergence,
early stopping, the plateau schedule), `reporting` writes the metrics.
"""
