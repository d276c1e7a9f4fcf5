"""The CAE half: MNIST digits, the autoencoder, its training, the 2-D latent space and its figures."""
