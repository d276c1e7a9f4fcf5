"""Predict with FCN-8s: foreground probabilities for a batch of images, batch by batch.

Prediction runs `fast_twin(model)` (`fcnlab.seg.speedups`) through `predict_on_batch`, which is
faster than Keras' `predict` on a CPU; the probabilities equal `model.predict`'s to float32
rounding. precision "bfloat16" computes under Keras' mixed_bfloat16 policy (README, Performance).
"""

from __future__ import annotations

import weakref

import numpy as np

from fcnlab.seg.speedups import check_precision, fast_twin, is_fcn8s, with_dtype_policy


def predict_in_batches(model, inputs: np.ndarray, batch_size: int):
    """`model.predict(inputs)` as float32 NumPy, batch by batch through `predict_on_batch`.

    A short last batch is padded with copies of its last item (and the copies dropped), so
    every batch has one shape and the graph is traced once.
    """
    if len(inputs) == 0:
        raise ValueError("predict_in_batches: no inputs")
    batches = []
    for start in range(0, len(inputs), batch_size):
        batch = np.asarray(inputs[start:start + batch_size], dtype=np.float32)
        kept = len(batch)
        if kept < batch_size and start > 0:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - kept, axis=0)])
        outputs = model.predict_on_batch(batch)
        single = not isinstance(outputs, (list, tuple))
        batches.append([np.asarray(o, dtype=np.float32)[:kept] for o in ([outputs] if single else outputs)])
    merged = [np.concatenate(parts) for parts in zip(*batches)]
    return merged[0] if single else merged


def predict_foreground(model, images: np.ndarray, batch_size: int = 8, precision: str = "float32") -> np.ndarray:
    """N x H x W x 3 images -> N x H x W float32 foreground probabilities (softmax channel 1).

    Runs `fast_twin(model)` (or, for a model that is not fcnlab's FCN-8s, `model` itself) batch
    by batch; with precision "float32" the probabilities equal `model.predict`'s to float32
    rounding. "bfloat16" computes with Keras' mixed_bfloat16 policy (weights kept in float32,
    products in bfloat16): faster on CPUs with AVX512-BF16 or AMX and on recent GPUs, slower on
    CPUs without them; probabilities then move slightly (README, Performance).
    """
    return predict_in_batches(_prediction_twin(model, precision), images, batch_size)[..., 1]


# model -> {precision: (its bfloat16 copy or None, its fast twin or None)}; kept while the model
# lives (the values never hold the model itself), so calls on the same model reuse one traced
# graph (`segment_files` predicts chunk by chunk).
_PREDICTION_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prediction_twin(model, precision: str):
    check_precision(precision)
    twins = _PREDICTION_TWINS.setdefault(model, {})
    if precision not in twins:
        copy = None if precision == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        source = model if copy is None else copy
        twins[precision] = (copy, fast_twin(source) if is_fcn8s(source) else None)
    copy, twin = twins[precision]
    if copy is not None:                               # bring the copy's weights up to date
        copy.set_weights(model.get_weights())
    source = model if copy is None else copy
    return source if twin is None else twin            # a model that is not FCN-8s runs as it is
