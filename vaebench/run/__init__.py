"""A run, from its config to its folder: the Hydra app (train.py), the composition root (compose.py),
the training step and loop (step.py, trainer.py) with its evaluation schedule (validation.py), stops
and exact resume (stops.py, training_state.py, checkpoint.py), the final evaluation of the best
checkpoint (final_evaluation.py), and `vaebench eval` (evaluate.py) and `vaebench sample` (sample.py),
both from a run read back from its folder (saved_run.py). conf/trainer/ and conf/eval/ are its settings."""
