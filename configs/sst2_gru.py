"""A GRU sentence classifier on SST-2 (GLUE), reading each sentence to its true length.

  python -m jaxlearn.main --config=configs/sst2_gru.py --workdir=/tmp/sst2_gru

Words -> ids with a vocabulary built on the train split; sequences padded to
64 tokens, and the GRU's state is taken at each sentence's last real token.
GLUE's test labels are hidden, so the labelled dev set is the test split here.
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "sst2"
  config.data.max_length = 64
  config.data.vocab_size = 20000
  config.data.min_count = 1
  config.model.name = "gru"
  config.model.embed_dim = 128
  config.model.hidden = 128
  config.model.bidirectional = False
  config.model.dropout = 0.5
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.clip_norm = 1.0
  config.schedule.name = "cosine"
  config.batch_size = 128
  config.num_epochs = 5
  return config
