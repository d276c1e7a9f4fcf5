"""prepare-seg: build train/val/test segmentation data from `seg.source` at the training scale
of `seg.resize` / `seg.image_size`, and record that geometry for train-fcn. The source is read
one image at a time and written as shards of `seg.shard_megapixels`, after checking the disk
has room for them."""

from fcnlab.core.quiet import quiet_tensorflow

quiet_tensorflow()   # first: TensorFlow reads its log level once, as the imports below load it

import sys

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import free_disk_bytes, save_json
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage
from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE, RESIZE_POLICIES
from fcnlab.seg.shards import check_free_space, prepared_bytes, save_prepared_segmentation
from fcnlab.seg.sources import SOURCES, demo_source, folder_source, geometry_record, npy_source

MIN_FOREGROUND_FRACTION = 0.001   # below this share of training pixels, warn: the model will learn little


def main(args):
    seg = load_section(args.params, "seg")
    source = seg.choice("source", SOURCES)
    resize = seg.choice("resize", RESIZE_POLICIES)
    image_size = seg.integer("image_size", minimum=IMAGE_SIZE_MULTIPLE, maximum=1024,
                             multiple_of=IMAGE_SIZE_MULTIPLE)
    seed = seg.integer("seed", minimum=0, maximum=2**32 - 1)
    shard_pixels = round(seg.number("shard_megapixels", minimum=0.0, exclusive_minimum=True) * 1e6)

    if source == "demo":
        demo = seg.section("demo")
        demo_size = demo.integer("image_size", minimum=IMAGE_SIZE_MULTIPLE, maximum=1024,
                                 multiple_of=IMAGE_SIZE_MULTIPLE)
        if (resize, image_size) != ("square", demo_size):
            print(f"note: prepare-seg: the demo scenes are drawn at seg.demo.image_size ({demo_size} x "
                  f"{demo_size}), so seg.resize ({resize}) and seg.image_size ({image_size}) are not used; "
                  "they apply to the npy and folder sources", file=sys.stderr)
        resize, image_size = "square", demo_size
        dataset = demo_source(demo.integer("n_train", minimum=1), demo.integer("n_val", minimum=1),
                              demo.integer("n_test", minimum=1), image_size, seed)
    else:
        folder = seg.string("path")
        val_fraction = seg.number("val_fraction", minimum=0.0, maximum=0.9, exclusive_minimum=True)
        if source == "npy":
            dataset = npy_source(folder, image_size, val_fraction, seed, resize)
        else:
            foreground_value = seg.integer("foreground_value", minimum=0, maximum=1)
            test_fraction = seg.number("test_fraction", minimum=0.0, maximum=0.9, exclusive_minimum=True)
            if val_fraction + test_fraction >= 1:
                raise FcnlabError(f"{args.params}: seg.val_fraction + seg.test_fraction must be below 1 "
                                  f"(the rest trains), got {val_fraction} + {test_fraction}; lower them")
            dataset = folder_source(folder, image_size, foreground_value, val_fraction, test_fraction,
                                        seed, resize)
    geometry = geometry_record(resize, image_size)
    check_free_space(args.out, prepared_bytes(dataset.all_sizes()), free_disk_bytes(args.out))
    stats = save_prepared_segmentation(args.out, dataset.splits(), geometry, shard_pixels)
    summary = {"source": source, **geometry, "test_split_note": dataset.test_split_note,
               **{name: split.summary() for name, split in stats.items()}}
    save_json(args.summary, summary)
    print(f"prepare-seg: {stats['train'].count} train / {stats['val'].count} val / {stats['test'].count} test "
          f"images from {source}, resize {resize} (image_size {image_size}); test labels: "
          f"{dataset.test_split_note}")
    fraction = stats["train"].foreground_fraction()
    if fraction < MIN_FOREGROUND_FRACTION:
        print(f"warning: prepare-seg: only {fraction:.4%} of the training pixels are foreground; the model "
              "will learn to predict background everywhere. Check seg.foreground_value (which mask value "
              "marks the foreground) and the masks themselves", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=[],
              outputs=["out", "summary"])
