"""Trials that differ only in numbers the step can take as arrays, trained as one program.

Those numbers are the seed, the learning rate, the weight decay, the dropout
rate and the loss's settings (label smoothing, the positive class's weight,
focal loss's gamma and alpha): `VECTORISED_KEYS`. The train states of a
group's trials are stacked on a leading trial axis and the very step a single
run compiles (`core.step.train_steps`) is `jax.vmap`ped over them, each trial
reading its own batches (its seed's split and order), its own learning rate
(the optimizer's `lr_scale`, see `core.optim`) and its own other numbers
(traced per-trial scalars the step's optimizer, loss and dropout layers are
built from, see `TrialNumbers`). After
each epoch every trial goes through the loop's policies as a single run would
(`training.policies.after_validation`: its own best checkpoint, early stopping,
divergence); a trial that stops, or whose loss turns non-finite, is masked out
and the others go on. Each trial's workdir ends as a single run's does
(config.json, preprocessing.json, checkpoints, metrics, summary.json), so
`evaluate`, `predict` and `export` work on it and a single run can resume it.
A group resumes from its trials' `latest` checkpoints when they all stand at
the same epoch (an interrupted epoch is run again).
"""

import contextlib
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from jaxlearn import config as config_lib
from jaxlearn import data, xla_cpu
from jaxlearn.core import optim, parallel, tasks
from jaxlearn.core.step import eval_step, train_steps
from jaxlearn.data import augment as augmentation
from jaxlearn.data import pipeline
from jaxlearn.errors import NonFiniteLossError, TrainingInterrupted
from jaxlearn.models import dropout
from jaxlearn.runs import build, checkpoint, tracking
from jaxlearn.runs import workdir as workdir_lib
from jaxlearn.training import (
  compiled,
  divergence,
  interrupts,
  nonfinite,
  policies,
  reporting,
  train,
)
from jaxlearn.training.progress import Progress, make_summary


class CannotGroup(Exception):
  """The trials cannot share one program after all (found once their data is read)."""


# The config fields a vectorised group's trials may differ in: the seed and learning rate
# (handled by the data split and `lr_scale`), then the numbers of `NUMBERS`.
LOSS_NUMBERS = ("label_smoothing", "pos_weight", "gamma", "alpha")
NUMBERS = ("optimizer.weight_decay", "model.dropout", *(f"loss.{k}" for k in LOSS_NUMBERS))
VECTORISED_KEYS = ("seed", "optimizer.learning_rate", *NUMBERS)


def number_of(config, key: str) -> float | None:
  """The value config.`key` gives the step (the optimizer's default for an unset decay)."""
  if key == "optimizer.weight_decay":
    return optim.settings_of(config.optimizer).get("weight_decay")
  group, name = key.split(".")
  return config[group].get(name)


@dataclasses.dataclass(frozen=True)
class TrialNumbers:
  """The numbers of NUMBERS that differ between a group's trials: each trial's step builds its
  optimizer (weight decay), loss (its settings) and dropout (rate) from its traced values."""
  keys: tuple  # the keys that differ, in NUMBERS' order

  @classmethod
  def of(cls, configs: list) -> "TrialNumbers":
    differing = []
    for key in NUMBERS:
      values = [number_of(c, key) for c in configs]
      if len(set(values)) > 1:
        if None in values:
          raise CannotGroup(f"config.{key} is unset in some trials and set in others")
        differing.append(key)
    return cls(tuple(differing))

  def arrays(self, configs: list) -> dict:
    """{key: [trials]} float32, the per-trial argument of the group's program."""
    return {k: jnp.asarray([number_of(c, k) for c in configs], jnp.float32) for k in self.keys}

  def optimizer_settings(self, numbers: dict) -> dict:
    key = "optimizer.weight_decay"
    return {"weight_decay": numbers[key]} if key in self.keys else {}

  def loss_settings(self, numbers: dict) -> dict:
    return {k.split(".")[1]: v for k, v in numbers.items() if k.startswith("loss.")}

  def model_transform(self, numbers: dict, transform):
    """The step's model transform, its dropout at the trial's rate when that differs."""
    if "model.dropout" not in self.keys:
      return transform
    with_rate = lambda forward: dropout.with_rate(forward, numbers["model.dropout"])
    return with_rate if transform is None else lambda forward: with_rate(transform(forward))


def why_not_vectorised(config) -> str:
  """'' when trials of `config` can train as one program, else why they run one by one."""
  if config.data.get("pipeline", "memory") != "memory":
    return "config.data.pipeline streams the data"
  if config.schedule.name == "plateau":
    return "the plateau schedule changes each trial's rate on its own"
  if config.distill.teacher:
    return "distillation reads a teacher"
  if config.init.from_checkpoint:
    return "config.init.from_checkpoint starts from saved weights"
  if jax.device_count() > 1:
    return "the trials of a group run on one device"
  return ""


def schedule_scales_with_rate(config) -> bool:
  """Whether the schedule at base rate r is r times the schedule at rate 1 (then trials of
  different rates share one schedule and differ in `lr_scale`)."""
  steps, total = 7, 7 * config.num_epochs
  rate = config.optimizer.learning_rate
  unit = optim.make_schedule(config.schedule, 1.0, steps, total)
  scaled = optim.make_schedule(config.schedule, rate, steps, total)
  points = jnp.arange(total + 1)
  expected = np.asarray(jax.vmap(scaled)(points))
  got = np.asarray(jax.vmap(unit)(points)) * rate
  # Up to float32 rounding, relative to the schedule's largest rate.
  return bool(np.allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()))


def as_single_run(state):
  """A trial's state as its single run holds it: the rate in `learning_rate`, `lr_scale` 1."""
  h = optim.hyperparams(state.opt_state)
  return state.replace(opt_state=optim.with_hyperparams(
      state.opt_state, learning_rate=h["learning_rate"] * h["lr_scale"],
      lr_scale=jnp.ones_like(h["lr_scale"])))


def as_group_member(state, rate: float):
  """The inverse of `as_single_run`, for a group whose schedule has base rate 1."""
  h = optim.hyperparams(state.opt_state)
  return state.replace(opt_state=optim.with_hyperparams(
      state.opt_state, learning_rate=h["learning_rate"] / rate, lr_scale=h["lr_scale"] * 0 + rate))


# How one program runs a group's trials: "vmap" batches every operation over the trial axis
# (on a GPU or TPU the trials then fill the chip); "map" loops over the trials inside the
# program (`jax.lax.map`). On a CPU, vmapped convolutions with per-trial weights become
# grouped convolutions that XLA runs several times slower than the trials one by one
# (experiments/bench_sweep.py), so the CPU loops.
TRIAL_AXES = ("vmap", "map")


def default_trial_axis(mesh) -> str:
  return "map" if mesh.devices.flat[0].platform == "cpu" else "vmap"


def over_trials(fn, num_shared: int, trial_axis: str):
  """`fn(state, seed_index, active?, *shared)` applied to every trial of stacked arguments:
  the first arguments carry the trial axis, the last `num_shared` are the same for all."""

  def apply(*args):
    split = len(args) - num_shared
    per_trial, shared = args[:split], args[split:]
    if trial_axis == "vmap":
      return jax.vmap(lambda *xs: fn(*xs, *shared))(*per_trial)
    return jax.lax.map(lambda xs: fn(*xs, *shared), per_trial)

  return apply


@dataclasses.dataclass
class _Trial:
  """One trial of the group: its config, workdir and how far it has got."""
  config: object
  workdir: str
  seed_index: int  # which of the group's data splits it reads
  checkpoints: checkpoint.Checkpoints | None = None
  reporter: reporting.Reporter | None = None
  progress: Progress = dataclasses.field(default_factory=Progress)
  watch: nonfinite.Watch | None = None
  failure: str = ""  # the error that ended it (a non-finite loss)

  @property
  def active(self) -> bool:
    return not (self.progress.stop_reason or self.failure
                or self.progress.epochs_done >= self.config.num_epochs)


def train_group(configs: list, workdirs: list[str],
                trial_axis: str = "") -> list[dict | Exception]:
  """Trains `configs` (differing only in VECTORISED_KEYS) together; each trial's summary, or
  the error that ended it (a DivergedError / NonFiniteLossError, as its single run raises).

  `trial_axis` (see TRIAL_AXES; default: by platform) is how the program runs the trials.
  """
  base = configs[0]
  for config in configs:
    config_lib.validate(config, jax.device_count())
    tracking.check_wandb(config)
  compiled.use_compilation_cache(base.compilation_cache_dir)
  mesh = parallel.make_mesh()
  seeds = sorted({c.seed for c in configs})
  splits, task = {}, None
  for seed in seeds:
    raw = data.load_raw(base.data, seed)
    task, splits[seed] = build.prepare_task(base, data.make_splits(raw, base.data, seed))
  dims = [build.data_dims(splits[s], task) for s in seeds]
  if any(d != dims[0] for d in dims):
    raise CannotGroup("the trials' data differ in size by seed")
  trials = [_Trial(c, w, seeds.index(c.seed)) for c, w in zip(configs, workdirs)]
  steps_per_epoch = pipeline.num_train_steps(len(splits[seeds[0]].train["targets"]),
                                             base.batch_size)
  numbers = TrialNumbers.of(configs)
  if "model.dropout" in numbers.keys:
    reason = dropout.only_ours(nnx.eval_shape(
        lambda: build.build_model(base, nnx.Rngs(0), dims[0])))
    if reason:
      raise CannotGroup(f"config.model.dropout differs but {reason}")
  rates = jnp.asarray([c.optimizer.learning_rate for c in configs], jnp.float32)
  # A weight decay that differs is traced in the step; any array stands for it here.
  settings = numbers.optimizer_settings({"optimizer.weight_decay": jnp.zeros(())})
  fresh = build.create_states(base, steps_per_epoch, dims[0], [c.seed for c in configs], 1.0,
                              settings)
  fresh = fresh.replace(opt_state=optim.with_hyperparams(fresh.opt_state, lr_scale=rates))
  layout = Layout(jax.tree.structure(fresh),
                  [single_run_structure(c, steps_per_epoch, dims[0]) for c in configs])
  logging.info("Vectorised group of %d trials (%s): one program, %d steps per epoch%s.",
               len(trials), ", ".join(workdirs), steps_per_epoch,
               f", each with its own {', '.join(numbers.keys)}" if numbers.keys else "")
  with contextlib.ExitStack() as stack:
    for trial in trials:
      stack.enter_context(workdir_lib.claim(trial.workdir, trial.config))
      trial.checkpoints = checkpoint.Checkpoints(trial.workdir)
      stack.callback(trial.checkpoints.close)
      trial.reporter = reporting.Reporter(trial.workdir,
                                          tracking.open_wandb(trial.config, trial.workdir))
      stack.callback(trial.reporter.close)
      if trial.reporter.wandb is not None:
        stack.callback(trial.reporter.wandb.finish)
      trial.watch = nonfinite.Watch.from_config(trial.config)
    states = _resume(trials, fresh, layout)
    one_trial = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), fresh)
    model_summary = str(build.summarize_state(one_trial, splits[seeds[0]].train["inputs"][:1],
                                              base))
    for trial in trials:
      run_dir = workdir_lib.RunDir(trial.workdir)
      workdir_lib.write_text(run_dir.model_summary, model_summary)
      workdir_lib.write_json(run_dir.config, train.run_record(trial.config))
      workdir_lib.write_json(run_dir.preprocessing, {**splits[seeds[trial.seed_index]]
                                                     .preprocessing, "model_dims": dims[0]})
    group = _Group(base, task, mesh, trials, splits, seeds, steps_per_epoch,
                   trial_axis or default_trial_axis(mesh), numbers,
                   numbers.arrays(configs), layout)
    states = group.train(states)
    return group.finish(states)


def single_run_structure(config, steps_per_epoch: int, dims: dict):
  """The pytree structure of `config`'s single-run train state (no arrays are made)."""
  build_state = build.state_builder(config, steps_per_epoch, dims)
  return jax.tree.structure(jax.eval_shape(build_state, jnp.uint32(config.seed)))


@dataclasses.dataclass
class Layout:
  """How a group's stacked state relates to each trial's single-run state.

  Their arrays are the same, in the same order; their structures may differ
  where a trial's single run builds no state-free piece the group needs (an
  optimizer without weight decay, in a group where the decay differs).
  """
  group: object  # the group's structure (that of the stacked state)
  singles: list  # each trial's single-run structure

  def single(self, states, t: int):
    """Trial `t` of the stacked `states` as its single run holds it."""
    member = as_single_run(jax.tree.map(lambda a: a[t], states))
    return jax.tree.unflatten(self.singles[t], jax.tree.leaves(member))

  def member(self, state, rate: float):
    """A trial's single-run `state` as a member of the group (base rate 1, `lr_scale` rate)."""
    return as_group_member(jax.tree.unflatten(self.group, jax.tree.leaves(state)), rate)


def _resume(trials: list[_Trial], fresh, layout: Layout):
  """The stacked states to start from: each trial's latest checkpoint, or its fresh state."""
  states = []
  for t, trial in enumerate(trials):
    rate = trial.config.optimizer.learning_rate
    state, saved = trial.checkpoints.restore_latest(layout.single(fresh, t))
    if saved:
      trial.progress = Progress(**saved)
      if trial.progress.partial_epoch:  # Interrupted mid-epoch by a single run: not ours.
        trial.progress.partial_epoch, trial.progress.data_position = [], None
    states.append(layout.member(state, rate))
  done = {trial.progress.epochs_done for trial in trials if trial.active}
  if len(done) > 1:
    raise CannotGroup(f"the trials stand at different epochs {sorted(done)}")
  return _stack(states)


@dataclasses.dataclass
class _Group:
  config: object
  task: object
  mesh: object
  trials: list
  splits: dict  # seed -> data.Splits
  seeds: list
  steps_per_epoch: int
  trial_axis: str  # see TRIAL_AXES
  numbers: TrialNumbers
  number_arrays: dict  # {key: [trials]}
  layout: Layout

  def __post_init__(self):
    c = self.config
    platform = self.mesh.devices.flat[0].platform
    self.transform = (xla_cpu.with_cpu_kernels
                      if xla_cpu.enabled(c.cpu_kernels, platform) else None)
    self.train_arrays = jax.device_put(_stack([self.splits[s].train for s in self.seeds]))
    self.val = jax.device_put(_stack([pipeline.make_eval_batches(
        self.splits[s].val, c.eval_batch_size, self.mesh) for s in self.seeds]))
    self.seed_index = jnp.asarray([t.seed_index for t in self.trials], jnp.int32)
    self.chance = [divergence.chance_accuracy(self.task.name, self.splits[s].val["targets"])
                   for s in self.seeds]
    augment = augmentation.make_augment(c.augment)
    skip = c.on_nonfinite == "skip"
    max_count = c.steps_per_call

    steps = self.steps_per_epoch

    def one_chunk(state, seed_index, active, numbers, arrays, orders, first, count):
      batch_at = lambda i: jax.tree.map(lambda a: a[seed_index, orders[seed_index, first + i]],
                                        arrays)
      settings = self.numbers.optimizer_settings(numbers)
      trial_state = state.replace(tx=build.make_tx(c, steps, 1.0, settings)) if settings else state
      new, metrics, health = train_steps(
          trial_state, batch_at, count, max_count=max_count, task=self._task(numbers),
          skip_nonfinite=skip, augment=augment,
          model_transform=self.numbers.model_transform(numbers, self.transform))
      new = jax.tree.map(lambda n, o: jnp.where(active, n, o), new.replace(tx=state.tx), state)
      return new, metrics, health

    cpu = self.transform is not None
    options = lambda kind: xla_cpu.compiler_options(kind, platform) if cpu else {}
    self.train_chunk = jax.jit(over_trials(one_chunk, 4, self.trial_axis), donate_argnums=0,
                               compiler_options=options("train"))

    def one_eval(state, seed_index, numbers, batches, i):
      batch = jax.tree.map(lambda b: b[seed_index, i], batches)
      return eval_step(state, batch, task=self._task(numbers), model_transform=self.transform)

    self.eval_batch = jax.jit(over_trials(one_eval, 2, self.trial_axis),
                              compiler_options=options("eval"))
    self.merge = jax.jit(jax.vmap(lambda a, b: a.merge(b)))
    self.compute = jax.jit(jax.vmap(lambda m: m.compute()))

  def _task(self, numbers: dict) -> tasks.Task:
    """The task whose loss has the trial's (traced) settings."""
    settings = self.numbers.loss_settings(numbers)
    if not settings:
      return self.task
    return self.task._replace(loss=tasks.make_loss(self.config, settings))

  def _orders(self, epoch: int) -> jax.Array:
    """Each seed's shuffled batch order for `epoch`, as its single run draws it."""
    batcher = pipeline.make_epoch_batcher(self.config.batch_size, self.mesh)
    return jnp.stack([batcher(self.splits[s].train, s, epoch).order for s in self.seeds])

  def _scalars(self, merged, t: int) -> dict[str, float]:
    return {k: float(v[t]) for k, v in jax.device_get(self.compute(merged)).items()}

  def train(self, states):
    c = self.config
    first_epoch = min((t.progress.epochs_done for t in self.trials if t.active), default=None)
    if first_epoch is None:
      return states
    with interrupts.catch_stop_signals() as stop:
      for epoch in range(first_epoch, c.num_epochs):
        if not any(t.active for t in self.trials):
          break
        started = time.time()
        states, train_metrics = self._train_epoch(states, epoch, stop)
        val_metrics = self._evaluate(states, self.val)
        seconds = time.time() - started
        for t, trial in enumerate(self.trials):
          if trial.active:
            self._after_validation(trial, states, t, epoch, train_metrics, val_metrics, seconds)
        if stop.requested:
          raise TrainingInterrupted(
              f"Stopped after epoch {epoch + 1}; each trial's latest checkpoint holds it. Rerun "
              "the same command to resume.")
    return states

  def _active(self) -> jax.Array:
    return jnp.asarray([t.active for t in self.trials])

  def _train_epoch(self, states, epoch: int, stop):
    """One epoch of every active trial, chunked as a single run chunks it (so its metrics
    merge alike); the host reads the steps' health back once per logging window."""
    orders, active = self._orders(epoch), self._active()
    merged, step, window, healths = None, 0, 0, []
    c = self.config
    while step < self.steps_per_epoch:
      count = min(c.steps_per_call, c.log_every_steps - window, self.steps_per_epoch - step)
      states, metrics, health = self.train_chunk(states, self.seed_index, active,
                                                 self.number_arrays, self.train_arrays, orders,
                                                 step, count)
      merged = metrics if merged is None else self.merge(merged, metrics)
      healths.append((health, count))
      step, window = step + count, (window + count) % c.log_every_steps
      if window == 0 or step == self.steps_per_epoch or stop.requested:
        self._check_health(healths, epoch * self.steps_per_epoch + step)
        healths, active = [], self._active()
      if stop.requested:
        raise TrainingInterrupted(
            f"Stopped during epoch {epoch + 1}; each trial's latest checkpoint holds the epoch "
            "before. Rerun the same command to resume (the epoch is run again).")
    return states, merged

  def _check_health(self, healths: list, last_step: int) -> None:
    """Each active trial's non-finite policy over a window's chunks [(health, count), ...]."""
    fetched = jax.device_get([h for h, _ in healths])  # One read-back per window.
    for t, trial in enumerate(self.trials):
      if trial.active:
        window = {k: np.concatenate([h[k][t][:n] for h, (_, n) in zip(fetched, healths)])
                  for k in fetched[0]}
        try:
          trial.watch.check(window, last_step)
        except NonFiniteLossError as e:
          trial.failure = str(e)
          logging.warning("Trial %s stopped: %s", trial.workdir, e)

  def _evaluate(self, states, batches):
    num_batches = jax.tree.leaves(batches)[0].shape[1]
    merged = None
    for i in range(num_batches):
      metrics = self.eval_batch(states, self.seed_index, self.number_arrays, batches, i)
      merged = metrics if merged is None else self.merge(merged, metrics)
    return merged

  def _after_validation(self, trial: _Trial, states, t: int, epoch: int, train_metrics,
                        val_metrics, seconds: float) -> None:
    state = self.layout.single(states, t)
    train_t, val_t = self._scalars(train_metrics, t), self._scalars(val_metrics, t)
    step = int(state.step)
    trial.reporter.write(step, "train", train_t, echo=False)
    trial.reporter.write(step, "val", val_t, echo=False)
    logging.info("Trial %s:", os.path.basename(trial.workdir))  # Names the epoch line below.
    policies.after_validation(state, trial.progress, epoch, train_t, val_t, trial.config,
                              seconds, self.chance[trial.seed_index],
                              save_best=trial.checkpoints.save_best)
    trial.checkpoints.save_latest(state, dataclasses.asdict(trial.progress))

  def finish(self, states) -> list:
    """Tests each trial's best checkpoint; writes its summary.json; its summary or error."""
    test = jax.device_put(_stack([pipeline.make_eval_batches(
        self.splits[s].test, self.config.eval_batch_size, self.mesh) for s in self.seeds]))
    best = []
    for t, trial in enumerate(self.trials):
      template = self.layout.single(states, t)
      if not trial.failure and trial.progress.history:
        template = trial.checkpoints.restore_best(template)[0]
      best.append(self.layout.member(template, trial.config.optimizer.learning_rate))
    stacked = _stack(best)
    test_metrics = self._evaluate(stacked, test)
    results = []
    for t, trial in enumerate(self.trials):
      if trial.failure:
        results.append(NonFiniteLossError(trial.failure))
        continue
      test_t = self._scalars(test_metrics, t)
      trial.reporter.write(int(best[t].step), "test", test_t, echo=False)
      summary = make_summary(trial.config, trial.progress, test_t)
      workdir_lib.write_json(workdir_lib.RunDir(trial.workdir).summary, summary)
      tracking.write_hparams(trial.workdir, trial.config, summary)
      if trial.reporter.wandb is not None:
        trial.reporter.wandb.summarise(summary)
      results.append(divergence.error(summary, trial.config)
                     if trial.progress.stop_reason.startswith("diverged") else summary)
    return results


def _stack(trees: list):
  """Trees of the same structure as one tree with a leading axis (numpy in, numpy out)."""
  stack = lambda *leaves: (np.stack(leaves) if isinstance(leaves[0], np.ndarray)
                           else jnp.stack(leaves))
  return jax.tree.map(stack, *trees)
