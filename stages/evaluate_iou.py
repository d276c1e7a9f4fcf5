"""evaluate-iou: IoU, Dice, accuracy, precision/recall of the FCN on the test split, next to
trivial baselines; per-image scores; IoU as a function of the decision threshold."""

from fcnlab.core.io import load_model, save_arrays, save_csv, save_json
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage
from fcnlab.seg.arrays import load_prepared_segmentation
from fcnlab.seg.metrics import (baselines, iou_vs_threshold, per_image_metrics, predict_masks,
                                segmentation_metrics)
from fcnlab.seg.model import check_segmentation_model
from fcnlab.seg.predict import predict_foreground
from fcnlab.seg.speedups import PRECISIONS


def main(args):
    evaluate = load_section(args.params, "evaluate")
    threshold = evaluate.number("threshold", minimum=0.0, maximum=1.0)
    n_thresholds = evaluate.integer("n_thresholds", minimum=2, maximum=1001)
    precision = evaluate.choice("precision", PRECISIONS)

    data = load_prepared_segmentation(args.data, "train_images", "train_masks", "test_images", "test_masks")
    model = load_model(args.model, check=check_segmentation_model)
    fg_probs = predict_foreground(model, data["test_images"], precision=precision)  # N x H x W
    predicted = predict_masks(fg_probs, threshold)

    model_metrics = segmentation_metrics(data["test_masks"], predicted)
    save_arrays(args.predictions, test_fg_probs=fg_probs)
    save_csv(args.per_image, per_image_metrics(data["test_masks"], predicted))
    save_csv(args.threshold_curve, iou_vs_threshold(data["test_masks"], fg_probs, n_thresholds))
    save_json(args.metrics, {
        "threshold": threshold, "precision": precision, "n_test_images": int(len(predicted)), "model": model_metrics,
        "baselines": baselines(data["test_masks"], data["test_images"], data["train_images"], data["train_masks"]),
    })
    print(f"evaluate-iou: mean IoU {model_metrics['mean_iou']}, foreground IoU "
          f"{model_metrics['iou']['foreground']}, Dice {model_metrics['dice']} on {len(predicted)} test images")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=["data", "model"],
              outputs=["predictions", "per_image", "threshold_curve", "metrics"])
