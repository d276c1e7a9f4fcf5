"""evaluate-iou: IoU, Dice, accuracy, precision/recall of the FCN on the test split, next to
trivial baselines; per-image scores; IoU as a function of the decision threshold."""

from fcnlab.core.quiet import quiet_tensorflow

quiet_tensorflow()   # first: TensorFlow reads its log level once, as the imports below load it

import sys

import numpy as np

from fcnlab.core.io import atomic_path, load_model, save_csv, save_json
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage
from fcnlab.seg.arrays import save_ragged_stream
from fcnlab.seg.evaluation import EvaluationTally, fit_intensity_threshold_by_image, predicted_and_tallied
from fcnlab.seg.metrics import beats_baselines, headline_metrics
from fcnlab.seg.model import check_segmentation_model
from fcnlab.seg.shards import load_prepared_split
from fcnlab.seg.speedups import PRECISIONS, emulated_bfloat16_warning, resolve_precision


def main(args):
    evaluate = load_section(args.params, "evaluate")
    threshold = evaluate.number("threshold", minimum=0.0, maximum=1.0)
    n_thresholds = evaluate.integer("n_thresholds", minimum=2, maximum=1001)
    precision = resolve_precision(evaluate.choice("precision", PRECISIONS))
    if warning := emulated_bfloat16_warning(precision, "evaluate-iou", "evaluate.precision"):
        print(warning)
    margin = evaluate.number("baseline_margin", minimum=0.0, maximum=1.0)

    test, train = load_prepared_split(args.data, "test"), load_prepared_split(args.data, "train")
    model = load_model(args.model, check=check_segmentation_model)
    tally = EvaluationTally(threshold, n_thresholds, fit_intensity_threshold_by_image(train.images, train.masks))
    with atomic_path(args.predictions) as tmp:
        tmp.mkdir()
        fg_probs = predicted_and_tallied(model, test.images, test.masks, tally, precision)   # H x W each
        save_ragged_stream(tmp, "test", "fg_probs", test.shapes(), fg_probs, np.float32)
    model_metrics, trivial = tally.model_metrics(), tally.baselines()
    learned = beats_baselines(model_metrics, trivial, margin)
    save_csv(args.per_image, tally.rows)
    save_csv(args.threshold_curve, tally.threshold_curve())
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
