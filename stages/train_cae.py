"""train-cae: train the seed's convolutional autoencoder; save encoder, decoder, metrics, figure."""

from fcnlab.core.quiet import quiet_tensorflow

quiet_tensorflow()   # first: TensorFlow reads its log level once, as the imports below load it

from fcnlab.cae.data import load_prepared_digits
from fcnlab.cae.figures import reconstruction_figure
from fcnlab.cae.training import reconstruct, reconstruction_metrics, train_cae
from fcnlab.core.distribute import check_batch_size, is_chief, training_strategy
from fcnlab.core.io import save_figure, save_json, save_model
from fcnlab.core.params import load_section
from fcnlab.core.reproducibility import seed_everything
from fcnlab.core.stage import run_stage
from fcnlab.core.tracking import live_callback, stop_if_diverged


def main(args):
    cae = load_section(args.params, "cae")
    epochs = cae.integer("epochs", minimum=1)
    batch_size = cae.integer("batch_size", minimum=1)
    learning_rate = cae.number("learning_rate", minimum=0.0, exclusive_minimum=True)
    seed = cae.integer("seed", minimum=0, maximum=2**32 - 1)
    n_examples = cae.integer("n_examples", minimum=1, maximum=32)
    strategy = training_strategy(load_section(args.params, "train").string("strategy"))
    chief = is_chief(strategy)  # in a multi-worker run the others train too but write nothing

    data = load_prepared_digits(args.data, "train_x", "test_x", "test_y")
    check_batch_size(batch_size, strategy, "cae.batch_size",
                     train=len(data["train_x"]), test=len(data["test_x"]))
    seed_everything(seed)
    encoder, decoder = train_cae(data["train_x"], data["test_x"], epochs, batch_size, learning_rate,
                                 callbacks=[stop_if_diverged("cae.learning_rate")]
                                 + ([live_callback(args.live)] if chief else []), strategy=strategy, seed=seed)
    if not chief:
        print("train-cae: trained as a non-chief worker (TF_CONFIG); the chief writes the outputs")
        return

    metrics = {split: reconstruction_metrics(data[f"{split}_x"], reconstruct(encoder, decoder, data[f"{split}_x"]))
               for split in ("train", "test")}
    examples = data["test_x"][:n_examples]
    save_figure(reconstruction_figure(examples, reconstruct(encoder, decoder, examples),
                                      data["test_y"][:n_examples]), args.figure)
    save_model(encoder, args.encoder)
    save_model(decoder, args.decoder)
    save_json(args.metrics, {"test_mse": metrics["test"]["mse"], "psnr_db": metrics["test"]["psnr_db"]})
    save_json(args.details, metrics)
    print(f"train-cae: test MSE {metrics['test']['mse']:.5f}, PSNR {metrics['test']['psnr_db']:.2f} dB")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=["data"],
              outputs=["encoder", "decoder", "live", "metrics", "details", "figure"])
