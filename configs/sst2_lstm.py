"""An LSTM sentence classifier on SST-2; otherwise as configs/sst2_gru.py.

  python -m jaxlearn.main --config=configs/sst2_lstm.py --workdir=/tmp/sst2_lstm
"""

from configs import sst2_gru


def get_config():
  config = sst2_gru.get_config()
  config.model.name = "lstm"
  return config
