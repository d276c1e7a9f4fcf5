"""Run a Keras model over an array batch by batch, without Keras' array input pipeline.

`model.predict(array)` wraps the array in a tf.data stream with a parallel `map`; under op
determinism (fcnlab.core.reproducibility) TensorFlow then logs a harmless but error-looking
`E0000 ... use_unbounded_threadpool` line (a TensorFlow bug). `predict_on_batch` has no stream.
"""

from __future__ import annotations

import numpy as np


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
