"""Segmentation: the FCN-8s model's data, training, prediction and export."""
