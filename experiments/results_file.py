"""Where a study keeps its measured figures: experiments/results/<study>_<date>.json.

Every figure quoted in the READMEs points at one of these files, so the record
carries the date it was measured (and each study adds what it varied).
"""

import datetime
import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write(study: str, record: dict) -> str:
  """Writes `record` with today's date as results/<study>_<date>.json; says and returns where."""
  record = {"date": datetime.date.today().isoformat(), **record}
  path = os.path.join(RESULTS, f"{study}_{record['date']}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  print(f"Wrote {path}")
  return path
