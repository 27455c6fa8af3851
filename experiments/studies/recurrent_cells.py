"""Recurrent cells on SST-2: a simple (Elman) RNN, an LSTM, a GRU, and a bag of embeddings.

  python -m jaxlearn.sweep --study=recurrent_cells --workdir=/tmp/study_recurrent_cells

20,000 of SST-2's training phrases (GLUE's dev set as the test split), sentences
up to 64 tokens, 128-wide embeddings and states, dropout 0.5, Adam at 2e-3 with
gradients clipped at norm 1 and a cosine schedule, 3 epochs, 2 seeds. The
recurrent models read each sentence to its true length and classify its last
state; the bag averages the words' embeddings and ignores their order.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  # configs/sst2_gru.py's recipe, less its model-specific fields (the bag takes no
  # `bidirectional`): every setting below builds its own model from these.
  config = default_config()
  config.data.name = "sst2"
  config.data.max_length = 64
  config.data.vocab_size = 20000
  config.data.max_train_examples = 20000
  config.model.name = "gru"
  config.model.embed_dim = 128
  config.model.hidden = 128
  config.model.dropout = 0.5
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.clip_norm = 1.0
  config.schedule.name = "cosine"
  config.batch_size = 128
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
