"""After training: the evaluation report of a finished run, its figures and its curves."""
