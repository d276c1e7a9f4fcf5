"""fcnlab: a DVC pipeline for two fully convolutional networks (a CAE on MNIST, FCN-8s on VGG16)."""

__version__ = "0.1.0"
