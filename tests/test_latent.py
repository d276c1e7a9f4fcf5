"""Latent-space helpers: k-NN accuracy, the auto decode points, the manifold grid."""

import numpy as np

from fcnlab.cae.latent import knn_accuracy, latent_grid, median_latent_per_digit


def brute_force_knn(train_z, train_y, test_z, test_y, k):
    correct = 0
    for z, y in zip(test_z, test_y):
        order = sorted(range(len(train_z)), key=lambda i: (float(np.sum((train_z[i] - z) ** 2)), i))[:k]
        votes = [int(train_y[i]) for i in order]
        correct += max(sorted(set(votes)), key=votes.count) == y
    return correct / len(test_z)


def test_knn_accuracy_matches_a_brute_force_vote():
    rng = np.random.default_rng(0)
    train_z, test_z = rng.normal(size=(200, 2)), rng.normal(size=(60, 2))
    train_y, test_y = rng.integers(0, 3, 200), rng.integers(0, 3, 60)
    for k in (1, 5):
        assert knn_accuracy(train_z, train_y, test_z, test_y, k) == brute_force_knn(train_z, train_y, test_z, test_y, k)


def test_knn_accuracy_is_one_for_separated_clusters():
    rng = np.random.default_rng(1)
    centers = np.array([[0, 0], [10, 0], [0, 10]])
    train_y, test_y = np.repeat([0, 1, 2], 30), np.repeat([0, 1, 2], 10)
    train_z = centers[train_y] + rng.normal(size=(90, 2))
    test_z = centers[test_y] + rng.normal(size=(30, 2))
    assert knn_accuracy(train_z, train_y, test_z, test_y, 5) == 1.0


def test_median_points_lie_inside_each_digit_cloud():
    rng = np.random.default_rng(2)
    labels = np.repeat([1, 5, 6], 50)
    latents = np.array([[-8, 0], [0, 8], [8, 0]])[np.searchsorted([1, 5, 6], labels)] + rng.normal(size=(150, 2))
    medians = median_latent_per_digit(latents, labels)
    assert sorted(medians) == [1, 5, 6]
    for digit, point in medians.items():
        own = latents[labels == digit]
        assert np.all(point >= own.min(0)) and np.all(point <= own.max(0))


def test_latent_grid_spans_the_cloud_top_down():
    latents = np.stack([np.linspace(0, 100, 101), np.linspace(-50, 50, 101)], axis=1)
    z1, z2 = latent_grid(latents, 5)
    assert len(z1) == len(z2) == 5
    assert z1[0] == 5 and z1[-1] == 95 and z2[0] == 45 and z2[-1] == -45
