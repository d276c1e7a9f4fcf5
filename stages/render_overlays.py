"""render-overlays: the seed's prediction figure for chosen test images, and best/worst-by-IoU grids."""

from fcnlab.core.quiet import quiet_tensorflow

quiet_tensorflow()   # first: TensorFlow reads its log level once, as the imports below load it

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import save_figures
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage
from fcnlab.seg.arrays import load_test_predictions
from fcnlab.seg.figures import prediction_figure, ranked_grid_figure
from fcnlab.seg.metrics import per_image_metrics, predict_masks
from fcnlab.seg.shards import load_prepared_split


def main(args):
    threshold = load_section(args.params, "evaluate").number("threshold", minimum=0.0, maximum=1.0)
    overlays = load_section(args.params, "overlays")
    examples = overlays.int_list("examples", minimum=0)
    n_ranked = overlays.integer("n_best_worst", minimum=1, maximum=16)

    test = load_prepared_split(args.data, "test")
    images, truth = test.images, test.masks
    fg_probs = load_test_predictions(args.predictions, test)               # read one image at a time
    too_big = [i for i in examples if i >= len(images)]
    if too_big:
        raise FcnlabError(f"params.yaml: overlays.examples {too_big} exceed the {len(images)} test images "
                          f"(indices 0..{len(images) - 1}); choose smaller indices")

    ious = np.array([per_image_metrics([truth[i]], [predict_masks(fg_probs[i], threshold)])[0]["iou"]
                     for i in range(len(images))])
    order = np.argsort(-ious, kind="stable")                                   # best first
    n_ranked = min(n_ranked, len(images))
    shown = {*examples, *order[:n_ranked].tolist(), *order[::-1][:n_ranked].tolist()}
    predicted = {i: predict_masks(fg_probs[i], threshold) for i in shown}      # only the images drawn

    figures = {f"example_{i}.png": prediction_figure(images[i], truth[i], predicted[i],
                                                     f"test image #{i}: IoU {ious[i]:.2f}")
               for i in examples}
    figures["best_by_iou.png"] = ranked_grid_figure(images, truth, predicted, order[:n_ranked], ious,
                                                    f"Best {n_ranked} test images by foreground IoU")
    figures["worst_by_iou.png"] = ranked_grid_figure(images, truth, predicted, order[::-1][:n_ranked], ious,
                                                     f"Worst {n_ranked} test images by foreground IoU")
    save_figures(args.figures, figures)
    print(f"render-overlays: {len(figures)} figures in {args.figures}")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=["data", "predictions"],
              outputs=["figures"])
