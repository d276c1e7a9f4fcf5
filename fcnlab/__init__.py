"""fcnlab: a DVC pipeline for two fully convolutional networks (a CAE on MNIST, FCN-8s on VGG16)."""

__version__ = "0.1.0"

import os as _os

# Quiet TensorFlow's C++ start-up banner (must happen before TensorFlow is first imported).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
