"""evaluate-iou: IoU, Dice, accuracy, precision/recall of the FCN on the test split, next to
trivial baselines; per-image scores; IoU as a function of the decision threshold."""

import sys

from fcnlab.core.io import atomic_path, load_model, save_csv, save_json
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage
from fcnlab.seg.arrays import save_split_arrays
from fcnlab.seg.metrics import (baselines, beats_baselines, headline_metrics, iou_vs_threshold,
                                per_image_metrics, pixels, predict_masks, segmentation_metrics)
from fcnlab.seg.model import check_segmentation_model
from fcnlab.seg.predict import predict_images
from fcnlab.seg.shards import load_prepared_split
from fcnlab.seg.speedups import PRECISIONS


def main(args):
    evaluate = load_section(args.params, "evaluate")
    threshold = evaluate.number("threshold", minimum=0.0, maximum=1.0)
    n_thresholds = evaluate.integer("n_thresholds", minimum=2, maximum=1001)
    precision = evaluate.choice("precision", PRECISIONS)
    margin = evaluate.number("baseline_margin", minimum=0.0, maximum=1.0)

    test, train = load_prepared_split(args.data, "test"), load_prepared_split(args.data, "train")
    model = load_model(args.model, check=check_segmentation_model)
    fg_probs = predict_images(model, test.images, precision=precision)          # H x W each, training scale
    predicted = [predict_masks(probs, threshold) for probs in fg_probs]

    truth = pixels(test.masks)
    model_metrics = segmentation_metrics(truth, pixels(predicted))
    trivial = baselines(truth, pixels(test.images), pixels(train.images), pixels(train.masks))
    learned = beats_baselines(model_metrics, trivial, margin)
    with atomic_path(args.predictions) as tmp:
        tmp.mkdir()
        save_split_arrays(tmp, "test", fg_probs=fg_probs)
    save_csv(args.per_image, per_image_metrics(test.masks, predicted))
    save_csv(args.threshold_curve, iou_vs_threshold(truth, pixels(fg_probs), n_thresholds))
    save_json(args.metrics, headline_metrics(model_metrics, trivial, learned))
    save_json(args.details, {
        "threshold": threshold, "precision": precision, "n_test_images": len(test), "model": model_metrics,
        "baselines": trivial, "beats_baselines": learned,
    })
    print(f"evaluate-iou: mean IoU {model_metrics['mean_iou']}, foreground IoU "
          f"{model_metrics['iou']['foreground']}, Dice {model_metrics['dice']} on {len(test)} test images")
    if not learned:
        best = max(trivial, key=lambda name: trivial[name]["mean_iou"] or 0.0)
        print(f"warning: evaluate-iou: the model's mean IoU {model_metrics['mean_iou']} is not above the "
              f"{best} baseline's {trivial[best]['mean_iou']} by {margin}: it has learned nothing useful "
              "(see README, 'When the model learns nothing')", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=["data", "model"],
              outputs=["predictions", "per_image", "threshold_curve", "metrics", "details"])
