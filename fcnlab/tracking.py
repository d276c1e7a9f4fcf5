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
