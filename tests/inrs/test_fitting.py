import math
import re

import pytest
import torch

from wsgraph.datasets.images import load_images
from wsgraph.inrs.fitting import fit_sirens, fit_sirens_autograd
from wsgraph.inrs.siren import PixelGrid, SirenRecipe, init_bounds, psnr, siren_forward, siren_init

# From real runs on 8 digits: 100 steps with the SIREN init -> 52.9 to 55 dB; 1000 steps with the
# released (dwsnets) init -> 36.4 to 109.6 dB (that init starts low-frequency and fits more slowly).
DIGITS_PSNR_AT_100_STEPS_SIREN = 45.0
DIGITS_PSNR_AT_1000_STEPS_DWSNETS = 32.0


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_images("digits", split="train").intensities()[:8].reshape(8, 64, 1)


def test_siren_init_depends_only_on_seed_and_key():
    recipe = SirenRecipe()
    full = siren_init(recipe, torch.arange(10), seed=7)
    part = siren_init(recipe, torch.tensor([3, 4]), seed=7)
    assert all(torch.equal(a[3:5], b) for a, b in zip(full, part))
    other = siren_init(recipe, torch.arange(10), seed=8)
    assert not torch.equal(full[1], other[1])
    for theta, (weight_bound, bias_bound) in zip(full, init_bounds(recipe)):
        assert float(theta[..., :-1].abs().max()) <= weight_bound
        assert float(theta[..., :-1].abs().max()) > 0.9 * weight_bound
        assert float(theta[..., -1].abs().max()) <= bias_bound
    hidden = math.sqrt(6 / 32) / 30
    # The released INR class: the first sine layer like the others, sqrt(6 / 2) / 30 = 0.0577.
    assert init_bounds(recipe) == [(math.sqrt(6 / 2) / 30, 0.0), (hidden, 0.0), (1 / math.sqrt(32), 1 / math.sqrt(32))]
    assert init_bounds(SirenRecipe(init="siren")) == [(0.5, 0.0), (hidden, 0.0), (1 / math.sqrt(32), 1 / math.sqrt(32))]
    with pytest.raises(ValueError, match="unknown init 'xavier'; known: dwsnets, siren"):
        SirenRecipe(init="xavier")


def test_first_layer_stays_small_with_the_released_init(digits):
    """The released init lets the first layer move from a small start; SIREN's starts (and stays) ~9x wider."""
    stds = {}
    for init in ("dwsnets", "siren"):
        fit = fit_sirens(digits, PixelGrid(8, 8), SirenRecipe(steps=200, init=init), torch.arange(8), seed=0)
        stds[init] = float(fit.weights[0].std())
    assert 0.02 < stds["dwsnets"] < 0.1 and stds["siren"] > 0.25, stds


@pytest.mark.parametrize(
    "widths, weight_decay",
    [((2, 32, 32, 1), 0.0), ((2, 8, 6, 5, 3), 0.0), ((1, 16, 16, 1), 1e-2)],
)
def test_fused_trainer_matches_autograd_adam(widths, weight_decay):
    generator = torch.Generator().manual_seed(0)
    recipe = SirenRecipe(widths=widths, steps=15, weight_decay=weight_decay)
    points = PixelGrid(5, 6) if widths[0] == 2 else torch.linspace(-1, 1, 30).unsqueeze(1)
    num_points = 30
    targets = torch.rand(6, num_points, widths[-1], generator=generator)
    keys = torch.arange(6)
    fused = fit_sirens(targets, points, recipe, keys, seed=1, batch_size=4)
    reference = fit_sirens_autograd(targets, points, recipe, keys, seed=1)
    for ours, theirs in zip([*fused.weights, *fused.biases], [*reference.weights, *reference.biases]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)
    torch.testing.assert_close(fused.mse, reference.mse, rtol=1e-4, atol=1e-7)


def test_grid_first_layer_matches_dense_coordinates(digits):
    recipe = SirenRecipe(steps=20)
    grid = PixelGrid(8, 8)
    on_grid = fit_sirens(digits, grid, recipe, torch.arange(8), seed=0)
    on_points = fit_sirens(digits, grid.coords(), recipe, torch.arange(8), seed=0)
    for a, b in zip(on_grid.weights, on_points.weights):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_fit_reaches_psnr_on_digits(digits):
    released = fit_sirens(digits, PixelGrid(8, 8), SirenRecipe(steps=1000), torch.arange(8), seed=0)
    assert float(psnr(released.mse).min()) > DIGITS_PSNR_AT_1000_STEPS_DWSNETS
    fit = fit_sirens(digits, PixelGrid(8, 8), SirenRecipe(steps=100, init="siren"), torch.arange(8), seed=0)
    assert float(psnr(fit.mse).min()) > DIGITS_PSNR_AT_100_STEPS_SIREN
    output = siren_forward(fit.weights, fit.biases, PixelGrid(8, 8).coords(), 30.0) + 0.5
    torch.testing.assert_close((output - digits).square().mean(dim=(1, 2)), fit.mse, rtol=1e-5, atol=1e-12)
    assert fit.steps.tolist() == [100] * 8


def test_fit_is_deterministic_and_independent_of_batching(digits):
    recipe = SirenRecipe(steps=10)
    keys = torch.arange(100, 108)
    first = fit_sirens(digits, PixelGrid(8, 8), recipe, keys, seed=3, batch_size=8, workers=1)
    again = fit_sirens(digits, PixelGrid(8, 8), recipe, keys, seed=3, batch_size=3, workers=2)
    assert all(torch.equal(a, b) for a, b in zip(first.weights + first.biases, again.weights + again.biases))
    alone = fit_sirens(digits[5:6], PixelGrid(8, 8), recipe, keys[5:6], seed=3)
    assert all(torch.equal(a[5:6], b) for a, b in zip(first.weights, alone.weights))
    other_seed = fit_sirens(digits, PixelGrid(8, 8), recipe, keys, seed=4)
    assert not torch.equal(first.weights[0], other_seed.weights[0])


def test_early_stopping_freezes_each_network(digits):
    one_step = fit_sirens(digits, PixelGrid(8, 8), SirenRecipe(steps=1), torch.arange(8), seed=0)
    stopped = fit_sirens(digits, PixelGrid(8, 8), SirenRecipe(steps=60, early_stop_loss=1.0), torch.arange(8), seed=0)
    assert stopped.steps.tolist() == [1] * 8
    assert all(torch.equal(a, b) for a, b in zip(one_step.weights, stopped.weights))
    mixed_targets = torch.cat([torch.full((1, 64, 1), 0.5), digits[:1]])
    mixed = fit_sirens(mixed_targets, PixelGrid(8, 8), SirenRecipe(steps=30, early_stop_loss=2e-3), torch.arange(2), 0)
    assert mixed.steps[0] < 30 and mixed.steps[1] == 30


def test_early_stopping_compacts_without_changing_any_network(digits):
    """Networks that stop leave the batch; those still running compute exactly as they would alone."""
    easy = torch.full((6, 64, 1), 0.5) + 0.01 * digits[:6]
    targets = torch.cat([easy[:3], digits[:1], easy[3:], digits[1:2]])
    recipe = SirenRecipe(steps=120, early_stop_loss=1e-4)
    keys = torch.arange(8)
    together = fit_sirens(targets, PixelGrid(8, 8), recipe, keys, seed=2, workers=1)
    steps = together.steps.tolist()
    # The easy ones stop early, so the batch is compacted at least once while the digits run on.
    assert max(steps[n] for n in (0, 1, 2, 4, 5, 6)) < 80 and steps[3] == steps[7] == 120, steps
    for n in range(8):
        alone = fit_sirens(targets[n : n + 1], PixelGrid(8, 8), recipe, keys[n : n + 1], seed=2)
        assert alone.steps.tolist() == [steps[n]]
        for a, b in zip(together.weights + together.biases, alone.weights + alone.biases):
            assert torch.equal(a[n : n + 1], b), n
    unstopped = fit_sirens(targets, PixelGrid(8, 8), SirenRecipe(steps=steps[3]), keys, seed=2)
    assert torch.equal(unstopped.weights[1][3], together.weights[1][3])


def test_fit_rejects_bad_input(digits):
    recipe = SirenRecipe(steps=1)
    with pytest.raises(ValueError, match=r"targets have shape \(8, 64, 1\), expected \[N, 30, 1\]"):
        fit_sirens(digits, PixelGrid(5, 6), recipe, torch.arange(8), 0)
    with pytest.raises(ValueError, match="targets contain NaN or inf"):
        fit_sirens(torch.full((1, 64, 1), math.nan), PixelGrid(8, 8), recipe, torch.arange(1), 0)
    with pytest.raises(ValueError, match=r"got \(3,\) keys for 8 targets"):
        fit_sirens(digits, PixelGrid(8, 8), recipe, torch.arange(3), 0)
    with pytest.raises(ValueError, match="at least one sine layer"):
        SirenRecipe(widths=(2, 1))
    with pytest.raises(ValueError, match="lr must be a positive number"):
        SirenRecipe(lr=0.0)
    with pytest.raises(ValueError, match="weight_decay must be a non-negative number"):
        SirenRecipe(weight_decay=-1.0)
    with pytest.raises(ValueError, match=r"early_stop_loss must be positive \(or None\)"):
        SirenRecipe(early_stop_loss=0.0)
    missing_device, message = (
        ("cuda:99", "--device cuda:99: no CUDA device 99")
        if torch.cuda.is_available()
        else ("cuda", "--device cuda: CUDA is not available on this machine")
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_sirens(digits, PixelGrid(8, 8), recipe, torch.arange(8), 0, device=missing_device)


def test_pixel_grid_convention():
    coords = PixelGrid(3, 4).coords()
    assert coords.shape == (12, 2)
    torch.testing.assert_close(coords[1], torch.tensor([-1 / 3, -1.0]))
    torch.testing.assert_close(coords[4], torch.tensor([-1.0, 0.0]))
    torch.testing.assert_close(coords[-1], torch.tensor([1.0, 1.0]))
