"""prepare-seg: build train/val/test segmentation data from `seg.source` at the training scale
of `seg.resize` / `seg.image_size`, and record that geometry for train-fcn."""

import sys

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import save_json
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage
from fcnlab.seg.arrays import save_prepared_segmentation
from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE, RESIZE_POLICIES
from fcnlab.seg.sources import (SOURCES, demo_segmentation, geometry_record, load_folder_source,
                                load_npy_source, segmentation_summary)

MIN_FOREGROUND_FRACTION = 0.001   # below this share of training pixels, warn: the model will learn little


def main(args):
    seg = load_section(args.params, "seg")
    source = seg.choice("source", SOURCES)
    resize = seg.choice("resize", RESIZE_POLICIES)
    image_size = seg.integer("image_size", minimum=IMAGE_SIZE_MULTIPLE, maximum=1024,
                             multiple_of=IMAGE_SIZE_MULTIPLE)
    seed = seg.integer("seed", minimum=0)
    max_megapixels = seg.number("max_megapixels", minimum=0.0, exclusive_minimum=True)

    if source == "demo":
        demo = seg.section("demo")
        image_size = demo.integer("image_size", minimum=IMAGE_SIZE_MULTIPLE, maximum=1024,
                                  multiple_of=IMAGE_SIZE_MULTIPLE)
        splits = demo_segmentation(demo.integer("n_train", minimum=1), demo.integer("n_val", minimum=1),
                                   demo.integer("n_test", minimum=1), image_size, seed, max_megapixels)
        resize = "square"                     # the scenes are drawn at image_size x image_size
    else:
        folder = seg.string("path")
        val_fraction = seg.number("val_fraction", minimum=0.0, maximum=0.9, exclusive_minimum=True)
        if source == "npy":
            splits = load_npy_source(folder, image_size, val_fraction, seed, max_megapixels, resize)
        else:
            foreground_value = seg.integer("foreground_value", minimum=0, maximum=1)
            test_fraction = seg.number("test_fraction", minimum=0.0, maximum=0.9, exclusive_minimum=True)
            if val_fraction + test_fraction >= 1:
                raise FcnlabError(f"{args.params}: seg.val_fraction + seg.test_fraction must be below 1 "
                                  f"(the rest trains), got {val_fraction} + {test_fraction}; lower them")
            splits = load_folder_source(folder, image_size, foreground_value, val_fraction, test_fraction,
                                        seed, max_megapixels, resize)
    geometry = geometry_record(resize, image_size)
    save_prepared_segmentation(args.out, splits.splits(), geometry)
    summary = {"source": source, **geometry, **segmentation_summary(splits)}
    save_json(args.summary, summary)
    print(f"prepare-seg: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
          f"images from {source}, resize {resize} (image_size {image_size}); test labels: "
          f"{splits.test_split_note}")
    fraction = splits.train.foreground_fraction()
    if fraction < MIN_FOREGROUND_FRACTION:
        print(f"warning: prepare-seg: only {fraction:.4%} of the training pixels are foreground; the model "
              "will learn to predict background everywhere. Check seg.foreground_value (which mask value "
              "marks the foreground) and the masks themselves", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=[],
              outputs=["out", "summary"])
