"""The GAN models (the released MNIST recipe, DCGAN-32) and the offline scores, on known answers."""

from __future__ import annotations

import math

import pytest
import torch

from dist_train.gan_metrics import class_coverage, frechet_distance, parzen_log_likelihoods, parzen_score
from dist_train.models.gan import GanModelConfig, build_gan, sample_noise
from dist_train.trainers.gan.samples import image_grid


def test_paper_mnist_models_follow_the_released_recipe():
    cfg = GanModelConfig()
    generator, discriminator = build_gan(cfg, (1, 28, 28))
    sizes = [(m.in_features, m.out_features) for m in generator.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [(100, 1200), (1200, 1200), (1200, 784)]
    assert all(p.abs().max() <= 0.05 for n, p in generator.named_parameters() if n.endswith("weight"))
    assert [(m.in_features, m.out_features) for m in discriminator.modules() if isinstance(m, torch.nn.Linear)] == [
        (784, 240 * 5),
        (240, 240 * 5),
        (240, 1),
    ]
    assert all(p.abs().max() <= 0.005 for n, p in discriminator.named_parameters() if n.endswith("weight"))
    assert all(not p.any() for n, p in discriminator.named_parameters() if n.endswith("bias"))
    mean = torch.rand(1, 28, 28) * 0.5
    mean[0, 0, 0] = 0.0  # clipped to 0.001 before the logit
    generator.init_output_bias(mean)
    expected = torch.log(mean.clamp(1e-3, 1 - 1e-3) / (1 - mean.clamp(1e-3, 1 - 1e-3))).flatten()
    torch.testing.assert_close(generator.output.bias.detach(), expected)
    z = sample_noise(cfg, 20_000, torch.Generator().manual_seed(0))
    assert z.shape == (20_000, 100) and z.abs().max() <= math.sqrt(3)
    assert z.var().item() == pytest.approx(1.0, abs=0.02)  # uniform on [-√3, √3]: unit variance
    normal = sample_noise(GanModelConfig(noise="gaussian"), 20_000, torch.Generator().manual_seed(0))
    assert normal.abs().max() > math.sqrt(3) and normal.var().item() == pytest.approx(1.0, abs=0.02)
    images = generator(z[:8])
    assert images.shape == (8, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    discriminator.eval()
    assert discriminator(images).shape == (8,)


def test_maxout_discriminator_drops_out_only_while_training():
    _, discriminator = build_gan(GanModelConfig(), (1, 28, 28))
    images = torch.rand(4, 1, 28, 28)
    discriminator.eval()
    torch.testing.assert_close(discriminator(images), discriminator(images))
    discriminator.train()
    assert not torch.equal(discriminator(images), discriminator(images))


def test_dcgan_32_makes_colour_images_and_refuses_other_sizes():
    cfg = GanModelConfig(arch="dcgan-32", g_channels=32, d_channels=8)
    generator, discriminator = build_gan(cfg, (3, 32, 32))
    images = generator(sample_noise(cfg, 5))
    assert images.shape == (5, 3, 32, 32) and -1 <= images.min() and images.max() <= 1
    assert discriminator(images).shape == (5,)
    with pytest.raises(ValueError, match="32×32"):
        build_gan(cfg, (1, 28, 28))


def test_parzen_window_gives_the_closed_form_answer():
    """All samples at one point: log p(x) = −‖x − s‖²/2σ² − (d/2) log 2πσ², whatever their number."""
    point, images = torch.rand(5, dtype=torch.float64), torch.rand(7, 5, dtype=torch.float64)
    samples = point.expand(30, 5)
    for sigma in (0.1, 0.5):
        expected = -((images - point) ** 2).sum(1) / (2 * sigma**2) - 2.5 * math.log(2 * math.pi * sigma**2)
        got = parzen_log_likelihoods(images, samples, [sigma], batch_size=3)[0]
        torch.testing.assert_close(got, expected)


def test_parzen_score_picks_sigma_on_validation_and_reports_the_standard_error():
    generator = torch.Generator().manual_seed(0)
    samples, valid, test = (torch.randn(n, 4, generator=generator) * 0.3 for n in (2000, 300, 400))
    sigmas = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    score = parzen_score(samples, valid, test, sigmas)
    valid_means = parzen_log_likelihoods(valid, samples, sigmas).mean(1)
    assert score["parzen_sigma"] == sigmas[int(valid_means.argmax())] and score["parzen_sigma"] not in (0.01, 3.0)
    test_ll = parzen_log_likelihoods(test, samples, [score["parzen_sigma"]])[0]
    assert score["parzen_ll"] == pytest.approx(float(test_ll.mean()))
    assert score["parzen_se"] == pytest.approx(float(test_ll.std() / math.sqrt(400)))


def test_frechet_distance_matches_the_definition():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(500, 6, generator=generator)
    b = torch.randn(400, 6, generator=generator) @ torch.randn(6, 6, generator=generator) + 2
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    cov_a, cov_b = torch.cov(a.double().T), torch.cov(b.double().T)
    cross = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0).sqrt().sum()  # Tr (Ca Cb)^½
    mean_term = ((a.double().mean(0) - b.double().mean(0)) ** 2).sum()
    expected = mean_term + cov_a.trace() + cov_b.trace() - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-6)


def test_class_coverage_counts_classes_with_a_real_share():
    assert class_coverage(torch.arange(1000) % 10, 10) == 1.0
    collapsed = torch.cat([torch.zeros(990, dtype=torch.long), torch.arange(10)])  # one sample per other class
    assert class_coverage(collapsed, 10) == 0.1


def test_image_grid_tiles_row_by_row():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 2, 3, 1).numpy()
    grid = image_grid(images, columns=3, border=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 5, 0] == 1 and grid[4, 1, 0] == 3 and grid[0, 0, 0] == 255


def test_classifier_augmentation_moves_each_image_by_whole_pixels_within_the_bound():
    from dist_train.trainers.classifier import shifted

    images = torch.zeros(200, 1, 28, 28)
    images[:, 0, 10, 13] = 1.0
    moved = shifted(images, 2, torch.Generator().manual_seed(0))
    where = moved[:, 0].flatten(1).argmax(1)
    rows, cols = where // 28 - 10, where % 28 - 13
    assert moved.sum() == 200 and rows.abs().max() == 2 and cols.abs().max() == 2
    assert len({(int(r), int(c)) for r, c in zip(rows, cols)}) == 25  # every shift in the 5×5 window occurs
    assert torch.equal(shifted(images, 0, torch.Generator()), images)


def test_nearest_finds_each_samples_closest_image_across_batches():
    from dist_train.gan_metrics import nearest

    images = torch.rand(50, 1, 4, 4)
    samples = images[[7, 42, 13]] + 0.01 * torch.randn(3, 1, 4, 4)
    assert nearest(samples, images, batch=16).tolist() == [7, 42, 13]
