"""Per-epoch curves through dvclive, written where `dvc.yaml` declares them as plots."""

from __future__ import annotations


def live_callback(directory):
    """A Keras callback logging every epoch's `loss`/`val_loss` (and other metrics) with dvclive.

    dvclive writes `<directory>/plots/metrics/{train,eval}/<metric>.tsv` (step, value; no
    timestamps, so reruns are byte-identical) and `<directory>/metrics.json` (last epoch).
    `dvcyaml=False`: the project's own `dvc.yaml` declares these files; dvclive must not
    write a second one. `save_dvc_exp=False`: `dvc exp run` records experiments, not dvclive.
    """
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    live = Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
    return DVCLiveCallback(live=live)


def epoch_progress(label: str):
    """A Keras callback printing `<label>: epoch i/n` as each epoch starts (flushed at once),
    so long runs show where they are even when Keras prints nothing for a single epoch."""
    import keras

    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            print(f"{label}: epoch {epoch + 1}/{self.params['epochs']}", flush=True)

    return EpochProgress()


def stop_if_diverged(param_key: str):
    """A Keras callback that stops training with a one-line error when the loss is NaN/inf,
    naming the learning-rate param to lower (otherwise a diverged model would be saved)."""
    import math

    import keras

    from fcnlab.core.errors import FcnlabError

    def check(logs):
        for name, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                raise FcnlabError(f"training diverged ({name} became {float(value)}); "
                                  f"lower {param_key} in params.yaml")

    class StopIfDiverged(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            check({"loss": (logs or {}).get("loss", 0.0)})

        def on_epoch_end(self, epoch, logs=None):
            check(logs)                       # the validation loss sees the weights after the last update

    return StopIfDiverged()
