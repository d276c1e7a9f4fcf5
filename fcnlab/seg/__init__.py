"""The segmentation half, read in the order data -> model -> training -> evaluation:

    data        sources.py (folder, npy, demo: demo_scenes.py), geometry.py (the one scale and
                padding rule), shards.py and arrays.py (prepared splits on disk, read per image)
    model       model.py (FCN-8s on VGG16), speedups.py (precision, the fast twin)
    training    training.py (the one fit path), augment.py, losses.py, callbacks.py
    prediction  predict.py (whole or tiled, decided once per image), tiling.py
    evaluation  evaluation.py, metrics.py, figures.py
    commands    segment.py (fcnlab segment), export.py (fcnlab export)

Each stage script in stages/ reads its params and calls one of these rooms.
"""
