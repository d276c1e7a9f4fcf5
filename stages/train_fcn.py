"""train-fcn: train the seed's FCN-8s on the prepared segmentation data; save the whole model."""

import numpy as np

from fcnlab.core.distribute import check_batch_size, is_chief, training_strategy
from fcnlab.core.io import save_json, save_model
from fcnlab.core.params import load_section
from fcnlab.core.reproducibility import seed_everything
from fcnlab.core.stage import run_stage
from fcnlab.core.tracking import epoch_progress, live_callback, stop_if_diverged
from fcnlab.seg.arrays import load_prepared_segmentation
from fcnlab.seg.model import fcn8s_vgg16
from fcnlab.seg.speedups import PRECISIONS
from fcnlab.seg.training import train_fcn


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
    seed = fcn.integer("seed", minimum=0)
    precision = fcn.choice("precision", PRECISIONS)
    strategy = training_strategy(load_section(args.params, "train").string("strategy"))
    chief = is_chief(strategy)  # in a multi-worker run the others train too but write nothing

    data = load_prepared_segmentation(args.data, "train_images", "train_masks", "val_images", "val_masks")
    check_batch_size(batch_size, strategy, "fcn.batch_size",
                     train=len(data["train_images"]), val=len(data["val_images"]))
    seed_everything(seed)
    with strategy.scope():
        model = fcn8s_vgg16(n_classes=2, encoder_weights=encoder_weights, **config)
    train_fcn(model, data["train_images"], data["train_masks"], data["val_images"], data["val_masks"],
              epochs, batch_size, learning_rate, strategy=strategy, precision=precision,
              callbacks=[epoch_progress("train-fcn"), stop_if_diverged("fcn.learning_rate")]
              + ([live_callback(args.live)] if chief else []))
    if not chief:
        print("train-fcn: trained as a non-chief worker; the chief writes the outputs")
        return
    save_model(model, args.model)
    save_json(args.metrics, {
        "encoder_weights": encoder_weights, **config, "precision": precision,
        "parameters": {"total": int(model.count_params()),
                       "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights))},
    })
    print(f"train-fcn: saved {args.model} ({model.count_params():,} parameters, encoder {encoder_weights}, "
          f"{'frozen' if config['freeze_encoder'] else 'trainable'})")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=["data"],
              outputs=["model", "live", "metrics"])
