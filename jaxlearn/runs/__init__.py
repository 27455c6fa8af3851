"""A run: built from a config, stored in a workdir, loaded back.

`build` makes the task and train state from a config and the data,
`workdir` owns the files a run writes, `checkpoint` its Orbax checkpoints,
`finished` loads a finished run back (training's teacher and transfer
learning use it, and so do the after-training commands), `inference` turns it
into a function on new inputs (`inputs` encodes those).
"""
