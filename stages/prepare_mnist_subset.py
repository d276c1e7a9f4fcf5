"""prepare-mnist-subset: load MNIST from `mnist.source`, keep `mnist.digits`, save train/test arrays."""

from fcnlab.core.quiet import quiet_tensorflow

quiet_tensorflow()   # first: TensorFlow reads its log level once, as the imports below load it

from fcnlab.cae.data import digit_counts, prepare_mnist_subset
from fcnlab.core.io import save_arrays, save_json
from fcnlab.core.mnist import load_mnist
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage


def main(args):
    mnist = load_section(args.params, "mnist")
    source = mnist.string("source")
    digits = mnist.int_list("digits", minimum=0, maximum=9)
    test_fraction = mnist.number("test_fraction", minimum=0.0, maximum=0.9, exclusive_minimum=True)
    seed = mnist.integer("seed", minimum=0, maximum=2**32 - 1)

    raw = load_mnist(source, test_fraction, seed)
    splits = prepare_mnist_subset(*raw, digits=digits, origin=f"mnist.source={source}")
    save_arrays(args.out, **splits.arrays())
    save_json(args.summary, {"source": source, "digits": digits, "counts": digit_counts(splits)})
    print(f"prepare-mnist-subset: {len(splits.train_y)} train / {len(splits.test_y)} test images "
          f"of digits {digits} from {source}")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=[],
              outputs=["out", "summary"])
