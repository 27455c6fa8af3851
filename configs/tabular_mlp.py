"""An MLP on a tabular CSV (Titanic-style: numbers, categories, missing cells) for a 0/1 target.

  python -m jaxlearn.main --config=configs/tabular_mlp.py --workdir=/tmp/titanic \
      --config.data.path=titanic.csv

Numeric columns are standardised and categorical ones one-hot encoded, both
fitted on the train split (7:2:1 split of the file). Identifier-like columns are
dropped; change `target_column` / `drop_columns` for another file.
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "csv"
  config.data.path = "titanic.csv"
  config.data.target_column = "Survived"
  config.data.drop_columns = "PassengerId,Name,Ticket,Cabin"
  config.model.name = "mlp"
  config.model.hidden = (32, 16)
  config.model.dropout = 0.1
  config.model.batch_norm = False
  config.model.layer_norm = False
  config.task = "binary"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  config.batch_size = 32
  config.eval_batch_size = 100
  config.num_epochs = 40
  return config
