"""The job that trains the embedded Shapes world models (``pipeline=train_world``): stages, grounding loss, weight
averaging, training data, fidelity and the model cards."""
