"""What happens when a step's loss or gradient is NaN/Inf: stop the run, or skip such steps.

The step itself reports each step's health and, with `skip_nonfinite`, leaves
the state unchanged by a non-finite step (`jaxlearn.core.step`); this module is the
policy the loop applies to those reports (`config.on_nonfinite`).
"""

import dataclasses

from jaxlearn.errors import NonFiniteLossError


@dataclasses.dataclass
class Watch:
  """Reads each window's step health and raises NonFiniteLossError when the run must stop.

  With on_nonfinite='stop' the first non-finite step stops the run; with
  'skip', only more than `max_consecutive` skipped steps in a row do.
  """
  on_nonfinite: str = "stop"
  max_consecutive: int = 10
  learning_rate: float = 0.0  # for the message
  precision: str = "fp32"  # for the message
  consecutive: int = 0  # non-finite steps in a row so far, carried across windows

  @classmethod
  def from_config(cls, config) -> "Watch":
    return cls(config.on_nonfinite, config.max_consecutive_nonfinite,
               config.optimizer.learning_rate, config.precision)

  def check(self, health: dict, last_step: int) -> None:
    """`health` holds per-step arrays ("loss", "grad_norm", "nonfinite") ending at `last_step`."""
    first_step = last_step - len(health["nonfinite"]) + 1
    skipping = self.on_nonfinite == "skip"
    for offset, flag in enumerate(health["nonfinite"]):
      self.consecutive = self.consecutive + 1 if flag else 0
      if flag and (not skipping or self.consecutive > self.max_consecutive):
        raise NonFiniteLossError(self._message(first_step + offset, health["loss"][offset],
                                               health["grad_norm"][offset]))

  def _message(self, step: int, loss, grad_norm) -> str:
    skipping = self.on_nonfinite == "skip"
    return (
        f"The training loss or gradient became non-finite at step {step} (loss {loss}, "
        f"gradient norm {grad_norm})"
        + (f", after {self.consecutive} such steps in a row" if skipping else "") +
        ". Likely causes: a learning rate too high for this model (config.optimizer."
        f"learning_rate={self.learning_rate}; try a tenth of it, a warm-up via "
        "config.schedule.warmup_epochs or config.optimizer.clip_norm), inputs that are not "
        "normalised, labels outside the model's classes (they give a NaN loss)"
        + (", or too little precision (config.precision='bf16'; try 'fp32')"
           if self.precision != "fp32" else "") + ".")
