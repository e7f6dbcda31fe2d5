"""The config groups whose entries build components, and what the run hands each: what a command line
is checked against before anything heavier (torch) is imported."""

# The arguments the run itself can hand to each kind of component.
RUN_TIME_ARGUMENTS = {
    "dataset": ("seed",),
    "model": ("data_shape",),
    "prior": ("latent_dim", "encode", "data_shape", "train_data"),
    # beta: the final β (the step gets the current one); dataset_size: the training split's size.
    "objective": ("beta", "dataset_size", "steps_per_epoch", "latent_dim"),
}
GROUPS = tuple(RUN_TIME_ARGUMENTS)
