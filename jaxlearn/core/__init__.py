"""The pure pieces a researcher imports: the train state, the steps, tasks, losses, optimizers.

Nothing here reads files or configs' workdirs: each module is a function of
arrays and pytrees (plus the optax transformations that fine-tuning and pruning
add), so it composes with your own loop.
"""
