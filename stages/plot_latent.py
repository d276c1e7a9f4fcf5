"""plot-latent: the CAE's 2-D latent space: scatter, decoded points, manifold, explorer page, k-NN accuracy."""

from fcnlab.core.quiet import quiet_tensorflow

quiet_tensorflow()   # first: TensorFlow reads its log level once, as the imports below load it

import numpy as np

from fcnlab.cae.data import load_prepared_digits
from fcnlab.cae.explorer import explorer_grid, explorer_html
from fcnlab.cae.figures import decoded_points_figure, latent_scatter_figure, manifold_figure
from fcnlab.cae.latent import (check_decoder_model, check_encoder_model, decode, encode, knn_accuracy,
                               latent_grid, median_latent_per_digit)
from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import load_model, save_figure, save_json, save_text
from fcnlab.core.params import load_section
from fcnlab.core.stage import run_stage


def main(args):
    latent = load_section(args.params, "latent")
    manifold_size = latent.integer("manifold_size", minimum=2, maximum=40)
    explorer_size = latent.integer("explorer_grid_size", minimum=2, maximum=36)  # 36: page < 1.5 MB
    k = latent.integer("knn_k", minimum=1)
    n_scatter = latent.integer("scatter_points", minimum=1)
    seed = latent.integer("seed", minimum=0, maximum=2**32 - 1)
    auto_points = latent.values.get("decode_points") == "auto"
    fixed_points = None if auto_points else latent.number_pairs("decode_points")

    data = load_prepared_digits(args.data, "train_x", "train_y", "test_x", "test_y")
    if k > len(data["train_x"]):
        raise FcnlabError(f"params.yaml: latent.knn_k={k} exceeds the {len(data['train_x'])} train images; "
                          "lower it")
    encoder, decoder = load_model(args.encoder, check=check_encoder_model), load_model(args.decoder, check=check_decoder_model)
    train_z, test_z = encode(encoder, data["train_x"]), encode(encoder, data["test_x"])
    test_y = data["test_y"]

    # The seed draws 500 random test latents; a seeded draw keeps the figure reproducible.
    shown = np.sort(np.random.default_rng(seed).permutation(len(test_z))[:n_scatter])
    points = (np.array(list(median_latent_per_digit(test_z, test_y).values())) if auto_points
              else np.array(fixed_points))
    z1, z2 = latent_grid(test_z, manifold_size)
    grid_points = np.array([(a, b) for b in z2 for a in z1])
    explorer_z1, explorer_z2 = explorer_grid(test_z, explorer_size)
    explorer_points = np.array([(a, b) for b in explorer_z2 for a in explorer_z1])

    save_text(args.scatter_csv, "z1,z2,digit\n" + "".join(
        f"{a:.6f},{b:.6f},{d}\n" for (a, b), d in zip(test_z, test_y)))
    save_figure(latent_scatter_figure(test_z[shown], test_y[shown]), args.scatter_png)
    save_figure(decoded_points_figure(test_z[shown], test_y[shown], points, decode(decoder, points)),
                args.decoded_png)
    save_figure(manifold_figure(z1, z2, decode(decoder, grid_points)), args.manifold_png)
    save_text(args.explorer_html, explorer_html(test_z, test_y, explorer_z1, explorer_z2,
                                                decode(decoder, explorer_points)))
    accuracy = knn_accuracy(train_z, data["train_y"], test_z, test_y, k)
    save_json(args.metrics, {"knn_acc": round(accuracy, 6)})
    save_json(args.details, {"knn_k": k,
                             "decoded_points": [[round(float(a), 6), round(float(b), 6)] for a, b in points]})
    print(f"plot-latent: {k}-NN accuracy of 2-D test latents {accuracy:.3f}")


if __name__ == "__main__":
    run_stage(main, __doc__, inputs=["data", "encoder", "decoder"],
              outputs=["scatter_csv", "scatter_png", "decoded_png", "manifold_png", "explorer_html", "metrics", "details"])
