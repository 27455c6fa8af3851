"""Text classifiers on token ids: recurrent (GRU/LSTM) and an embedding bag.

`pad_id` (0 by default; training passes the data's, `jaxlearn.data.text.PAD`)
marks padding. Each sequence's true length is the number of non-padding ids, so padding never
changes a prediction: the recurrent models stop each sequence at its length
(`seq_lengths`; the backward direction starts at the last real token), and the
embedding bag averages real tokens only.
"""

from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from jaxlearn.errors import ConfigError
from jaxlearn.models.dropout import Dropout

# "simple": Elman's RNN, h' = tanh(W x + U h + b), the cell whose gradients vanish over long
# sequences (the problem LSTM and GRU gates were made to solve).
CELLS = {"gru": nnx.GRUCell, "lstm": nnx.OptimizedLSTMCell, "simple": nnx.SimpleCell}


def sequence_lengths(ids: jax.Array, pad_id: int = 0) -> jax.Array:
  """Real tokens per sequence (at least 1, so an empty text reads one padding token)."""
  return jnp.maximum((ids != pad_id).sum(axis=-1), 1)


class RNNClassifier(nnx.Module):
  """embedding -> dropout -> RNN (GRU, LSTM or simple; optionally both directions) -> last
  state -> dropout -> fc."""

  def __init__(self, vocab_size: int, num_classes: int = 2, cell: str = "gru",
               embed_dim: int = 128, hidden: int = 128, bidirectional: bool = False,
               dropout: float = 0.0, pad_id: int = 0, *, rngs: nnx.Rngs):
    if cell not in CELLS:
      raise ConfigError(f"config.model.cell={cell!r}; choose one of {sorted(CELLS)}.")
    self.expected_input = f"int token ids shaped (length,), each below {vocab_size}"
    self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
    # The initial state is zeros (given in the call), so the RNN needs no random stream.
    make_rnn = lambda: nnx.RNN(CELLS[cell](embed_dim, hidden, rngs=rngs), return_carry=True,
                               rngs=False)
    self.forward_rnn = make_rnn()
    self.backward_rnn = make_rnn() if bidirectional else None
    self.is_lstm = cell == "lstm"
    self.hidden_size = hidden
    self.pad_id = pad_id
    self.dropout = Dropout(dropout)
    self.head = nnx.Linear(hidden * (2 if bidirectional else 1), num_classes, rngs=rngs)

  def __call__(self, ids: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    lengths = sequence_lengths(ids, self.pad_id)
    x = self.dropout(self.embed(ids), deterministic=not train, rngs=rngs)
    states = [self._last_state(self.forward_rnn, x, lengths, reverse=False)]
    if self.backward_rnn is not None:
      states.append(self._last_state(self.backward_rnn, x, lengths, reverse=True))
    h = jnp.concatenate(states, axis=-1)
    return self.head(self.dropout(h, deterministic=not train, rngs=rngs))

  def _last_state(self, rnn, x, lengths, *, reverse: bool):
    zeros = jnp.zeros((x.shape[0], self.hidden_size), x.dtype)
    carry, _ = rnn(x, initial_carry=(zeros, zeros) if self.is_lstm else zeros,
                   seq_lengths=lengths, reverse=reverse, keep_order=True)
    return carry[1] if self.is_lstm else carry  # An LSTM's carry is (c, h).


class GRUClassifier(RNNClassifier):
  """RNNClassifier with a GRU cell."""

  def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 128,
               hidden: int = 128, bidirectional: bool = False, dropout: float = 0.0,
               pad_id: int = 0, *, rngs: nnx.Rngs):
    super().__init__(vocab_size, num_classes, "gru", embed_dim, hidden, bidirectional, dropout,
                     pad_id, rngs=rngs)


class SimpleRNNClassifier(RNNClassifier):
  """RNNClassifier with Elman's simple (tanh) cell: the baseline the gated cells improve on."""

  def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 128,
               hidden: int = 128, bidirectional: bool = False, dropout: float = 0.0,
               pad_id: int = 0, *, rngs: nnx.Rngs):
    super().__init__(vocab_size, num_classes, "simple", embed_dim, hidden, bidirectional,
                     dropout, pad_id, rngs=rngs)


class LSTMClassifier(RNNClassifier):
  """RNNClassifier with an LSTM cell."""

  def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 128,
               hidden: int = 128, bidirectional: bool = False, dropout: float = 0.0,
               pad_id: int = 0, *, rngs: nnx.Rngs):
    super().__init__(vocab_size, num_classes, "lstm", embed_dim, hidden, bidirectional, dropout,
                     pad_id, rngs=rngs)


class EmbeddingBagMLP(nnx.Module):
  """The bag-of-words baseline: the mean embedding of the real tokens -> MLP (`hidden`: the
  layers' widths, or one width as the recurrent models take it)."""

  def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 64,
               hidden: Sequence[int] | int = (64,), dropout: float = 0.0, pad_id: int = 0, *,
               rngs: nnx.Rngs):
    self.expected_input = f"int token ids shaped (length,), each below {vocab_size}"
    self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
    self.pad_id = pad_id
    sizes = [embed_dim, *((hidden,) if isinstance(hidden, int) else hidden)]
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    self.dropout = Dropout(dropout)
    self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, ids: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    real = (ids != self.pad_id)[..., None].astype(jnp.float32)
    x = (self.embed(ids) * real).sum(axis=1) / jnp.maximum(real.sum(axis=1), 1.0)
    for layer in self.hidden:
      x = self.dropout(nnx.relu(layer(x)), deterministic=not train, rngs=rngs)
    return self.head(x)
