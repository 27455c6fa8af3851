"""Recurrent cells on SST-2: a simple (Elman) RNN, an LSTM, a GRU, and a bag of embeddings.

  python -m jaxlearn.sweep --study=recurrent_cells --workdir=/tmp/study_recurrent_cells

20,000 of SST-2's training phrases (GLUE's dev set as the test split), sentences
up to 64 tokens, 128-wide embeddings and states, dropout 0.5, Adam at 2e-3 with
gradients clipped at norm 1 and a cosine schedule, 3 epochs, 2 seeds. The
recurrent models read each sentence to its true length and classify its last
state; the bag averages the words' embeddings and ignores their order.
"""

from configs import sst2_gru
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = sst2_gru.get_config()  # Its model is one of the settings below.
  config.data.max_train_examples = 20000
  config.num_epochs = 3
  return Study(
      question="Does an LSTM or GRU beat a plain RNN and a bag of words on sentiment?",
      config=config,
      settings={
          "simple_rnn": {"model.name": "simple_rnn"},
          "lstm": {"model.name": "lstm"},
          "gru": {"model.name": "gru"},
          "bag_of_embeddings": {"model.name": "embedding_bag"},
      },
      seeds=(0, 1),
      smoke={"data.max_train_examples": 256, "data.vocab_size": 2000})
