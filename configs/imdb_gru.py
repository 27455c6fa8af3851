"""A bidirectional GRU on IMDB movie reviews (25k train / 25k test), 256 tokens per review.

  python -m jaxlearn.main --config=configs/imdb_gru.py --workdir=/tmp/imdb_gru

Reads ROOT/imdb/ (aclImdb's folders, or train.csv/test.csv with 'text' and
'label' columns) or TFDS `imdb_reviews`. A GPU run is expected to reach about
86-88% test accuracy.
"""

from configs import sst2_gru


def get_config():
  config = sst2_gru.get_config()
  config.data.name = "imdb"
  config.data.max_length = 256
  config.data.min_count = 2
  config.model.bidirectional = True
  config.model.dropout = 0.5
  config.optimizer.learning_rate = 1e-3
  config.num_epochs = 8
  return config
