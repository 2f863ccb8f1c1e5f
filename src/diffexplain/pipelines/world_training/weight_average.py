"""The exponential moving average of the denoiser's weights (Lightning's EMA callback, adapted to resuming)."""

from lightning.pytorch.callbacks import EMAWeightAveraging


class WeightAverage(EMAWeightAveraging):
    """Lightning's EMA callback, except that the module keeps its last weights when training ends.

    Checkpoints then always hold both (``state_dict``: the average, ``current_model_state``: the last weights), so a
    resumed or extended run continues from the last weights; the stage's result is read from the checkpoint.
    """

    def on_train_end(self, trainer, pl_module) -> None:
        pass
