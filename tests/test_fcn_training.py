"""FCN training: the fast twin learns the seed's plain model's weights, bfloat16 nearly so, and
the default control is the seed's plain training (windows and the kept epoch:
test_seg_training_control.py)."""

import functools

import keras
import numpy as np

from fcnlab.seg.model import fcn8s_vgg16
from fcnlab.core.batches import predict_in_batches
from fcnlab.seg.predict import predict_foreground
from fcnlab.seg.speedups import FusedAdam, fast_twin
from fcnlab.seg.training import TrainingRecord, epoch_rows, train_fcn
from fcnlab.core.reproducibility import seed_everything


def tiny_data(n=6, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = (images.mean(-1) > 127).astype(np.uint8)
    return images, masks


@functools.cache
def trained_weights(freeze: bool = True):
    """Weights after 2 epochs of train_fcn. (Seeded, so one run per argument set serves every test.)"""
    seed_everything(0)
    model = fcn8s_vgg16(head_width=8, freeze_encoder=freeze)
    images, masks = tiny_data()
    train_fcn(model, images[:4], masks[:4], images[4:], masks[4:], epochs=2, batch_size=2, learning_rate=1e-3)
    return model, [w.numpy() for w in model.weights]


def one_hot_masks(masks):
    return np.eye(2, dtype=np.float32)[masks]


def plain_and_fast_steps(freeze: bool, steps: int = 4):
    """The seed's plain model with Keras' Adam, and its fast twin with FusedAdam, each trained
    `steps` batches of the same data from the same start: both models' weights after."""
    images, masks = tiny_data()
    x, y = images[:4].astype(np.float32), one_hot_masks(masks[:4])
    weights = []
    for fast in (False, True):
        keras.utils.set_random_seed(0)
        model = fcn8s_vgg16(head_width=8, freeze_encoder=freeze)
        trained = fast_twin(model) if fast else model
        trained.compile(optimizer=(FusedAdam if fast else keras.optimizers.Adam)(1e-3),
                        loss="categorical_crossentropy")
        for step in range(steps):
            trained.train_on_batch(x[2 * (step % 2):2 * (step % 2) + 2], y[2 * (step % 2):2 * (step % 2) + 2])
        weights.append([w.numpy() for w in model.weights])
    return weights


def test_fast_twin_training_learns_the_same_weights_as_the_plain_model():
    """The speedups (padding-free conv6, fused Adam) against the seed's plain model and Adam."""
    plain, fast = plain_and_fast_steps(freeze=False)
    # Adam divides by the gradient's running RMS, so a weight whose gradient is ~0 moves by up to
    # the learning rate (1e-3) each step whichever way rounding tips it: a rare element differs
    # by up to 4 steps x 1e-3; nearly all agree to 1e-4.
    for a, b in zip(fast, plain):
        np.testing.assert_allclose(a, b, atol=4e-3)
        assert np.mean(np.isclose(a, b, rtol=1e-3, atol=1e-4)) > 0.98


def test_train_fcn_is_deterministic():
    _, first = trained_weights(freeze=False)
    _, again = trained_weights.__wrapped__(freeze=False)       # a second run, not the cached one
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_fast_twin_shares_the_models_weights_and_outputs():
    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=8, image_size=64)
    twin = fast_twin(model)
    assert {id(w) for w in twin.weights} == {id(w) for w in model.weights}
    assert "conv6_padding_free" in [layer.name for layer in twin.layers]
    images, _ = tiny_data(n=3, size=64)
    np.testing.assert_allclose(twin.predict(images.astype(np.float32), verbose=0),
                               model.predict(images.astype(np.float32), verbose=0), atol=1e-6)


def test_predict_in_batches_pads_the_last_batch_and_drops_the_padding():
    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=4, image_size=32)
    image = keras.Input((32, 32, 3))
    features = keras.Model(image, [keras.layers.Conv2D(3, 3)(image), keras.layers.AveragePooling2D(2)(image)])
    images, _ = tiny_data(n=5, size=32)
    batched = predict_in_batches(features, images, batch_size=2)          # 2 + 2 + 1 (padded to 2)
    whole = features.predict(images.astype(np.float32), verbose=0)
    assert [b.shape[0] for b in batched] == [5, 5]
    for a, b in zip(batched, whole):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    probs = predict_in_batches(model, images, batch_size=4)
    assert probs.shape == (5, 32, 32, 2) and probs.dtype == np.float32


def test_training_changes_only_the_head_when_the_encoder_is_frozen():
    seed_everything(0)
    before = {w.path: w.numpy() for w in fcn8s_vgg16(head_width=8).weights}
    model, _ = trained_weights(freeze=True)
    changed = {w.path for w in model.weights if not np.array_equal(w.numpy(), before[w.path])}
    assert changed and all(not path.startswith(("block", "vgg_preprocess")) for path in changed)


def test_predict_foreground_returns_channel_one_probabilities():
    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=4)
    images, _ = tiny_data(n=2, size=32)
    probs = predict_foreground(model, images)
    assert probs.shape == (2, 32, 32) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, model.predict(images.astype(np.float32), verbose=0)[..., 1], atol=1e-6)


def test_bfloat16_prediction_is_close_to_float32_and_follows_weight_changes():
    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=8)
    images, _ = tiny_data(n=3, size=64)
    exact = predict_foreground(model, images)
    fast = predict_foreground(model, images, precision="bfloat16")
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert not np.array_equal(fast, exact)                    # it did compute in bfloat16
    np.testing.assert_allclose(fast, exact, atol=2e-2)
    bias = model.get_layer("up8_softmax").bias
    bias.assign(np.array([0.0, 3.0], np.float32))            # push every pixel towards foreground
    moved = predict_foreground(model, images, precision="bfloat16")
    np.testing.assert_allclose(moved, predict_foreground(model, images), atol=2e-2)
    assert moved.mean() > fast.mean() + 0.3


def test_with_dtype_policy_copies_the_weights_and_computes_in_that_type():
    from fcnlab.seg.speedups import with_dtype_policy

    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=4)
    copy = with_dtype_policy(model, "mixed_bfloat16")
    assert copy.get_layer("conv6").compute_dtype == "bfloat16"
    assert copy.get_layer("conv6").kernel.dtype == "float32"
    for a, b in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_unknown_precision_is_refused_by_name():
    import pytest

    with pytest.raises(ValueError, match="'float16' is not a precision to compute in; use float32 or bfloat16"):
        predict_foreground(fcn8s_vgg16(head_width=4), tiny_data(n=1, size=32)[0], precision="float16")


def test_bfloat16_training_learns_nearly_the_float32_weights_into_a_float32_model():
    seed_everything(0)
    model = fcn8s_vgg16(head_width=8)
    images, masks = tiny_data()
    train_fcn(model, images[:4], masks[:4], images[4:], masks[4:], epochs=2, batch_size=2,
              learning_rate=1e-3, precision="bfloat16")
    bf16 = [w.numpy() for w in model.weights]
    _, fp32 = trained_weights(freeze=True)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert [w.dtype for w in model.weights] == ["float32"] * len(model.weights)
    head = {w.path for w in model.weights if w.path.startswith(("conv6", "fc7", "score", "up"))}
    moved = [not np.array_equal(a, b) for w, a, b in zip(model.weights, bf16, fp32) if w.path in head]
    assert any(moved)                                                      # trained differently...
    for a, b in zip(bf16, fp32):
        np.testing.assert_allclose(a, b, atol=4e-3)                        # ...but to nearly the same weights


def test_predicting_keeps_no_model_alive_and_reuses_one_twin_per_model():
    import gc
    import weakref

    from fcnlab.seg.predict import _prediction_twin

    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=4)
    images, _ = tiny_data(n=1, size=32)
    predict_foreground(model, images)
    predict_foreground(model, images, precision="bfloat16")
    assert _prediction_twin(model, "float32") is _prediction_twin(model, "float32")
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None                             # the cache let go of it


# --- The record of a run ----------------------------------------------------------------------------


def test_default_control_trains_lists_like_arrays_and_records_every_epoch():
    """Without a control (the seed's plain training) a run keeps its last epoch and still logs
    the validation IoU; lists of images train exactly as the stacked arrays do."""
    seed_everything(0)
    model = fcn8s_vgg16(head_width=8)
    images, masks = tiny_data()
    record = train_fcn(model, list(images[:4]), list(masks[:4]), list(images[4:]), list(masks[4:]), epochs=2,
                       batch_size=2, learning_rate=1e-3)
    assert isinstance(record, TrainingRecord)
    assert (record.epochs_run, record.kept_epoch) == (2, 2)
    assert len(record.history["loss"]) == len(record.history["val_mean_iou"]) == 2
    assert record.best_epoch in (1, 2) and record.best_val_mean_iou == max(record.history["val_mean_iou"])
    _, stacked = trained_weights(freeze=True)
    for a, b in zip([w.numpy() for w in model.weights], stacked):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    rows = epoch_rows(record)
    assert [(row["epoch"], row["kept"]) for row in rows] == [(1, 0), (2, 1)]
    assert rows[0]["loss"] == round(record.history["loss"][0], 6)
