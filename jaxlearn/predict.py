"""Ask a trained run about new inputs: top-k classes with their probabilities.

  python -m jaxlearn.predict --workdir=W digit.png photo.jpg array.npy
  python -m jaxlearn.predict --workdir=W --text "a gripping, funny film" --text "dull"
  python -m jaxlearn.predict --workdir=W reviews.txt        # text: one example per line
  python -m jaxlearn.predict --workdir=W passengers.csv     # tables: the training columns
  ... --top_k=3 --json                                      # one JSON object per line

Images of any size and mode are converted as the run's data was (channels,
size); each conversion that training did not do is printed with the result.
In Python: `jaxlearn.load_predictor(W).predict(inputs)`; see `jaxlearn.deploy.predict`.
"""

import json
import sys

from absl import flags

from jaxlearn import cli


def main(argv):
  from jaxlearn.deploy import predict  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs import inference  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs.workdir import json_safe  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  predictor = inference.load_predictor(values.workdir)
  pairs = predict.gather_inputs(argv[1:], values.text or [], predictor.spec)
  records = predict.predict_records(predictor, pairs, values.top_k, values.invert)
  for record in records:
    if values.json:  # NaN (a model that outputs it) is null: every line is valid JSON.
      print(json.dumps(json_safe(record), allow_nan=False))
    if "error" in record:
      print(f"jaxlearn: error: {record['error']}", file=sys.stderr)
    elif not values.json:
      print(predict.format_record(record))
  sys.stdout.flush()
  failed = sum("error" in r for r in records)
  if failed:
    cli.fail(f"{failed} of {len(records)} inputs could not be predicted (each is named above); "
             f"the other {len(records) - failed} were.")


if __name__ == "__main__":
  cli.define_workdir_flag()
  flags.DEFINE_integer("top_k", 3, "Classes shown per input (classification).", lower_bound=1)
  flags.DEFINE_bool("json", False, "Print one JSON object per input and line.")
  flags.DEFINE_multi_string("text", None, "A text to classify (text models); repeatable.")
  flags.DEFINE_bool("invert", False, "Images: use 255 - pixel (dark ink on light paper for a "
                    "model trained on light strokes on black, as MNIST's).")
  cli.run(main)
