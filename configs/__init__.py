"""Experiment configs: one `get_config()` per file, run with `--config=configs/NAME.py`."""
