"""The segmentation half: data sources, prepared arrays, FCN-8s, training, prediction, metrics, figures."""
