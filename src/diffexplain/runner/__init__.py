"""The Lightning runner: DataModule over prompt items, a LightningModule whose predict_step runs the pipeline,
and the callback that writes the output contract (the only place that writes files or logs)."""
