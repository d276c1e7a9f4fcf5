"""train-fcn: train the seed's FCN-8s on the prepared segmentation data; save the whole model, the
training geometry beside it, per-epoch curves and which epoch was kept."""

from fcnlab.core.quiet import quiet_tensorflow

quiet_tensorflow()   # first: TensorFlow reads its log level once, as the imports below load it

import numpy as np

from fcnlab.core.distribute import check_batch_size, is_chief, training_strategy
from fcnlab.core.io import save_csv, save_json, save_model
from fcnlab.core.params import load_section
from fcnlab.core.reproducibility import seed_everything
from fcnlab.core.stage import run_stage
from fcnlab.core.tracking import epoch_progress, live_callback, stop_if_diverged
from fcnlab.seg.arrays import load_geometry
from fcnlab.seg.augment import NO_AUGMENTATION, Augmentation
from fcnlab.seg.callbacks import LR_SCHEDULES
from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE
from fcnlab.seg.losses import LOSSES
from fcnlab.seg.model import fcn8s_vgg16
from fcnlab.seg.shards import load_prepared_split
from fcnlab.seg.speedups import PRECISIONS, emulated_bfloat16_warning, resolve_precision
from fcnlab.seg.training import TrainingControl, epoch_rows, train_fcn


def main(args):
    fcn = load_section(args.params, "fcn")
    encoder_weights = fcn.string("encoder_weights")
    config = {
        "head_width": fcn.integer("head_width", minimum=1),
        "freeze_encoder": fcn.boolean("freeze_encoder"),
        "score_relu": fcn.boolean("score_relu"),
        "vgg_preprocessing": fcn.boolean("vgg_preprocessing"),
    }
    epochs = fcn.integer("epochs", minimum=1)
    batch_size = fcn.integer("batch_size", minimum=1)
    learning_rate = fcn.number("learning_rate", minimum=0.0, exclusive_minimum=True)
    seed = fcn.integer("seed", minimum=0, maximum=2**32 - 1)
    precision = resolve_precision(fcn.choice("precision", PRECISIONS))
    if warning := emulated_bfloat16_warning(precision, "train-fcn", "fcn.precision"):
        print(warning)
    patch_size = None if fcn.values.get("patch_size") is None else fcn.integer(
        "patch_size", minimum=IMAGE_SIZE_MULTIPLE, maximum=2048, multiple_of=IMAGE_SIZE_MULTIPLE)
    control = TrainingControl(
        loss=fcn.choice("loss", LOSSES), patch_size=patch_size,
        augmentation=Augmentation() if fcn.boolean("augment") else NO_AUGMENTATION,
        keep_best=fcn.boolean("keep_best"),
        patience=None if fcn.values.get("patience") is None else fcn.integer("patience", minimum=1),
        lr_schedule=fcn.choice("lr_schedule", LR_SCHEDULES),
        seed=seed)
    steps_per_epoch = None if fcn.values.get("steps_per_epoch") is None else fcn.integer(
        "steps_per_epoch", minimum=1)
    strategy = training_strategy(load_section(args.params, "train").string("strategy"))
    chief = is_chief(strategy)  # in a multi-worker run the others train too but write nothing

    train, val = load_prepared_split(args.data, "train"), load_prepared_split(args.data, "val")
    geometry = {**load_geometry(args.data), "patch_size": patch_size}   # checked before training
    check_batch_size(batch_size, strategy, "fcn.batch_size", train=len(train), val=len(val))
    seed_everything(seed)
    with strategy.scope():
        model = fcn8s_vgg16(n_classes=2, encoder_weights=encoder_weights, **config)
    record = train_fcn(model, train.images, train.masks, val.images, val.masks, epochs, batch_size,
                       learning_rate, strategy=strategy, precision=precision, control=control,
                       train_shards=train.shards, steps_per_epoch=steps_per_epoch,
                       callbacks=[epoch_progress("train-fcn"), stop_if_diverged("fcn.learning_rate")]
                       + ([live_callback(args.live)] if chief else []))
    if not chief:
        print("train-fcn: trained as a non-chief worker; the chief writes the outputs")
        return
    save_model(model, args.model)
    save_json(args.geometry, geometry)
    save_csv(args.epochs, epoch_rows(record))
    best = None if record.best_val_mean_iou is None else round(record.best_val_mean_iou, 6)
    save_json(args.metrics, {"val_miou": best, "kept_epoch": record.kept_epoch})
    save_json(args.details, {
        "precision": precision, "epochs_run": record.epochs_run, "kept_epoch": record.kept_epoch, "best_epoch": record.best_epoch,
        "best_val_mean_iou": best, "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
    })
    kept = f"; kept epoch {record.kept_epoch} of {record.epochs_run}" + (
        "" if record.best_val_mean_iou is None else f" (best val mean IoU {record.best_val_mean_iou:.3f}, "
                                                    f"epoch {record.best_epoch})")
    print(f"train-fcn: saved {args.model} ({model.count_params():,} parameters, encoder {encoder_weights}, "
          f"{'frozen' if config['freeze_encoder'] else 'trainable'}){kept}")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=["data"],
              outputs=["model", "geometry", "live", "epochs", "metrics", "details"])
