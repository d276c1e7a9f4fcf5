"""prepare-seg: build train/val/test segmentation arrays from `seg.source` at `seg.image_size`."""

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import save_arrays, save_json
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage
from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE
from fcnlab.seg.sources import (SOURCES, demo_segmentation, load_folder_source, load_npy_source,
                                segmentation_summary)


def main(args):
    seg = load_section(args.params, "seg")
    source = seg.choice("source", SOURCES)
    image_size = seg.integer("image_size", minimum=IMAGE_SIZE_MULTIPLE, maximum=1024,
                             multiple_of=IMAGE_SIZE_MULTIPLE)
    seed = seg.integer("seed", minimum=0)
    max_megapixels = seg.number("max_megapixels", minimum=0.0, exclusive_minimum=True)

    if source == "demo":
        demo = seg.section("demo")
        splits = demo_segmentation(demo.integer("n_train", minimum=1), demo.integer("n_val", minimum=1),
                                   demo.integer("n_test", minimum=1), image_size, seed, max_megapixels)
    else:
        folder = seg.string("path")
        val_fraction = seg.number("val_fraction", minimum=0.0, maximum=0.9, exclusive_minimum=True)
        if source == "npy":
            splits = load_npy_source(folder, image_size, val_fraction, seed, max_megapixels)
        else:
            foreground_value = seg.integer("foreground_value", minimum=0, maximum=1)
            test_fraction = seg.number("test_fraction", minimum=0.0, maximum=0.9, exclusive_minimum=True)
            if val_fraction + test_fraction >= 1:
                raise FcnlabError(f"{args.params}: seg.val_fraction + seg.test_fraction must be below 1 "
                                  f"(the rest trains), got {val_fraction} + {test_fraction}; lower them")
            splits = load_folder_source(folder, image_size, foreground_value, val_fraction, test_fraction,
                                        seed, max_megapixels)
    save_arrays(args.out, **splits.arrays())
    summary = {"source": source, **segmentation_summary(splits)}
    save_json(args.summary, summary)
    print(f"prepare-seg: {len(splits.train_images)} train / {len(splits.val_images)} val / "
          f"{len(splits.test_images)} test images at {image_size} px from {source}; "
          f"test labels: {splits.test_split_note}")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=[],
              outputs=["out", "summary"])
