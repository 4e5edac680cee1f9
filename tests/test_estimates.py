"""Every formula in noiselint.estimates against Monte Carlo sampling (fixed seeds, within 2 %)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from noiselint import estimates as est
from noiselint.findings import Basis, Estimate

TOLERANCE = 0.02  # relative, for every Monte Carlo comparison


def _assert_close(measured: float, predicted: float) -> None:
    """Monte Carlo ``measured`` within TOLERANCE (relative) of the formula's ``predicted``."""
    assert abs(measured - predicted) <= TOLERANCE * abs(predicted), (measured, predicted)


def _power(y: np.ndarray) -> float:
    """Mean square of zero-mean noise: its variance, without re-estimating the (known) mean."""
    return float(np.mean(np.square(y, dtype=np.float64)))


@pytest.fixture(scope="module")
def noise_image() -> np.ndarray:
    """2048 x 2048 white N(0, 1) noise shared by the filter tests."""
    return np.random.default_rng(0).standard_normal((2048, 2048))


def _filter(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """Valid-mode 2-D correlation with ``kernel`` followed by stride-``stride`` subsampling."""
    return signal.fftconvolve(x, kernel[::-1, ::-1], mode="valid")[::stride, ::stride]


def _apply_box_stack(x: np.ndarray, layers: list[tuple[int, int]]) -> np.ndarray:
    """Run the actual stack: each layer a k x k mean filter, then its stride."""
    for k, s in layers:
        x = _filter(x, np.full((k, k), 1.0 / k**2), s)
    return x


# ---------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_box_filter_gain_monte_carlo(noise_image: np.ndarray, k: int) -> None:
    kernel = np.full((k, k), 1.0 / k**2)
    assert est.box_filter_gain(k) == pytest.approx(est.filter_noise_gain(kernel)) == pytest.approx(1 / k**2)
    _assert_close(_power(_filter(noise_image, kernel)), est.box_filter_gain(k))


def test_box_is_the_least_noise_filter_with_unit_dc_gain() -> None:
    rng = np.random.default_rng(1)
    for k in (3, 5, 7):
        for _ in range(20):
            h = rng.random((k, k))
            assert est.filter_noise_gain(h / h.sum()) >= est.box_filter_gain(k)


def test_binomial_blur_gain_quoted_in_downsample_gain() -> None:
    binomial = np.outer([1, 2, 1], [1, 2, 1]) / 16
    assert est.filter_noise_gain(binomial) == pytest.approx(0.140625)


STACKS = [
    [(3, 2), (3, 1), (3, 1)],  # ResNet-C/D deep stem
    [(7, 2), (3, 2)],  # 7x7/s2 conv then a 3x3/s2 mean pool
    [(2, 2), (2, 2)],
    [(5, 1), (3, 3)],
]


@pytest.mark.parametrize("layers", STACKS)
def test_composed_box_gain_monte_carlo(noise_image: np.ndarray, layers: list[tuple[int, int]]) -> None:
    kernels, strides = [k for k, _ in layers], [s for _, s in layers]
    _assert_close(_power(_apply_box_stack(noise_image, layers)), est.composed_box_gain(kernels, strides))


@pytest.mark.parametrize("layers", STACKS)
def test_composed_kernel_is_the_stack_impulse_response(layers: list[tuple[int, int]]) -> None:
    kernels, strides = [k for k, _ in layers], [s for _, s in layers]
    field, kernel = est.composed_kernel(kernels, strides)
    assert kernel.shape == (field, field)
    assert field == est.receptive_field(kernels, strides)
    assert kernel.sum() == pytest.approx(1.0)
    x = np.random.default_rng(2).standard_normal((96, 96))
    stacked = _apply_box_stack(x, layers)
    direct = _filter(x, kernel, math.prod(strides))
    np.testing.assert_allclose(stacked, direct[: stacked.shape[0], : stacked.shape[1]], atol=1e-12)


def test_composed_values() -> None:
    assert est.receptive_field([3, 3, 3], [2, 1, 1]) == 11
    assert est.receptive_field([7], [2]) == 7
    assert est.composed_box_gain([7], [2]) == pytest.approx(est.box_filter_gain(7))
    assert est.composed_box_gain([3, 3, 3], [2, 1, 1]) == pytest.approx(0.0149, abs=5e-5)
    with pytest.raises(ValueError, match="one stride per kernel"):
        est.composed_kernel([3, 3], [2])


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_downsample_gain_monte_carlo(noise_image: np.ndarray, stride: int) -> None:
    x = noise_image
    freq = np.abs(np.fft.fftfreq(len(x)))
    # ideal low-pass with cutoff pi/stride per axis; the bins at the cutoff count half, so the kept band
    # is exactly 1/stride of the spectrum
    keep = (freq < 0.5 / stride) + 0.5 * (freq == 0.5 / stride)
    low = np.fft.ifft2(np.fft.fft2(x) * np.outer(keep, keep)).real
    _assert_close(_power(low[::stride, ::stride]), est.downsample_gain(stride, anti_aliased=True))
    _assert_close(_power(x[::stride, ::stride]), est.downsample_gain(stride, anti_aliased=False))
    pooled = _filter(x, np.full((stride, stride), 1.0 / stride**2), stride)
    estimate = est.subsample_estimate(stride)
    _assert_close(_power(pooled) / _power(x[::stride, ::stride]), estimate.factor)
    assert est.antialias_estimate(stride).factor == pytest.approx(1 / stride**2)


# ---------------------------------------------------------------------------------------- pooling

RESEARCH_POOL_TABLE = [  # window, E[max], Var[max], MSE max, MSE avg (RESEARCH.md section 2)
    (2, 1.0294, 0.4917, 1.5513, 0.2500),
    (3, 1.4850, 0.3574, 2.5626, 0.1111),
    (4, 1.7660, 0.2950, 3.4137, 0.0625),
    (5, 1.9653, 0.2585, 4.1210, 0.0400),
    (7, 2.2412, 0.2168, 5.2397, 0.0204),
]


@pytest.mark.parametrize(("k", "e_max", "v_max", "mse_max", "mse_avg"), RESEARCH_POOL_TABLE)
def test_pooling_table_to_four_decimals(
    k: int, e_max: float, v_max: float, mse_max: float, mse_avg: float
) -> None:
    n = k * k
    assert est.expected_max_normal(n) == pytest.approx(e_max, abs=5e-5)
    assert est.var_max_normal(n) == pytest.approx(v_max, abs=5e-5)
    assert est.max_pool_mse(n) == pytest.approx(mse_max, abs=5e-5)
    assert est.avg_pool_mse(n) == pytest.approx(mse_avg, abs=5e-5)


def test_max_of_two_normals_closed_form() -> None:
    assert est.expected_max_normal(1) == pytest.approx(0.0, abs=1e-12)
    assert est.var_max_normal(1) == pytest.approx(1.0)
    assert est.expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-9)
    assert est.var_max_normal(2) == pytest.approx(1 - 1 / math.pi, rel=1e-9)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 7])
def test_pooling_monte_carlo(k: int) -> None:
    cells = 500  # 250,000 non-overlapping k x k windows of one noise image
    image = np.random.default_rng(4).standard_normal((cells * k, cells * k), dtype=np.float32)
    windows = image.reshape(cells, k, cells, k)
    maxed = windows.max(axis=(1, 3)).astype(np.float64)
    averaged = windows.mean(axis=(1, 3), dtype=np.float64)
    n = k * k
    _assert_close(float(maxed.mean()), est.expected_max_normal(n))
    _assert_close(float(maxed.var()), est.var_max_normal(n))
    _assert_close(_power(maxed), est.max_pool_mse(n))
    _assert_close(_power(averaged), est.avg_pool_mse(n))
    _assert_close(_power(averaged) / _power(maxed), est.max_pool_estimate((k, k)).factor)


def test_global_max_pool_monte_carlo() -> None:
    values = np.random.default_rng(5).standard_normal((200_000, 7 * 7))
    estimate = est.global_max_pool_estimate(49)
    _assert_close(_power(values.max(axis=1)), estimate.current)
    _assert_close(_power(values.mean(axis=1)), estimate.proposed)


# ---------------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("std", "expected"),
    [(est.CLIP_STD, (1.861, 1.913, 1.813)), (est.IMAGENET_STD, (2.183, 2.232, 2.222))],
)
def test_lipschitz_factors_monte_carlo(std: tuple[float, ...], expected: tuple[float, ...]) -> None:
    rng = np.random.default_rng(6)
    mean = np.array([0.48, 0.46, 0.41])[:, None]
    clean = rng.random((3, 1_000_000))
    sigma = 0.1
    normalized = (clean + sigma * rng.standard_normal(clean.shape) - mean) / np.array(std)[:, None]
    reference = (clean + sigma * rng.standard_normal(clean.shape) - 0.5) / 0.5
    noise_std = (normalized - (clean - mean) / np.array(std)[:, None]).std(axis=1)
    reference_std = (reference - (clean - 0.5) / 0.5).std(axis=1)
    factors = est.lipschitz_factors(std)
    assert factors == pytest.approx(expected, abs=5e-4)
    for measured, predicted in zip(noise_std / reference_std, factors, strict=True):
        _assert_close(float(measured), predicted)


def test_worst_channel_and_clip_bound() -> None:
    assert est.worst_channel(est.CLIP_STD) == (1, pytest.approx(1.9135, abs=5e-5))
    assert round(est.worst_channel(est.CLIP_STD)[1], 2) == 1.91  # the abstract's "up to 1.91x"
    assert est.worst_channel(est.INCEPTION_STD) == (0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        est.lipschitz_factors((0.2, 0.0, 0.3))


def test_lipschitz_bound_is_attained_by_worst_channel_noise() -> None:
    rng = np.random.default_rng(7)
    std = np.array(est.CLIP_STD)[:, None, None]
    channel, factor = est.worst_channel(est.CLIP_STD)
    ratios = []
    for _ in range(200):
        delta = rng.standard_normal((3, 8, 8))
        ratios.append(np.linalg.norm(delta / std) / np.linalg.norm(delta / 0.5))
    assert max(ratios) <= factor
    only_worst = np.zeros((3, 8, 8))
    only_worst[channel] = rng.standard_normal((8, 8))
    assert np.linalg.norm(only_worst / std) / np.linalg.norm(only_worst / 0.5) == pytest.approx(factor)


# ------------------------------------------------------------------------------ real weights


def _conv2d(x: np.ndarray, weight: np.ndarray, stride: int = 1, groups: int = 1) -> np.ndarray:
    """Valid, strided, grouped 2-D convolution (PyTorch semantics) of x (C, H, W), weight (O, C/g, k, k)."""
    per_group_out, per_group_in = weight.shape[0] // groups, x.shape[0] // groups
    outputs = []
    for c in range(weight.shape[0]):
        g = c // per_group_out
        inputs = x[g * per_group_in : (g + 1) * per_group_in]
        full = signal.fftconvolve(inputs, weight[c, :, ::-1, ::-1], mode="valid", axes=(1, 2)).sum(axis=0)
        outputs.append(full[::stride, ::stride])
    return np.stack(outputs)


@pytest.mark.parametrize(("groups", "stride"), [(1, 1), (2, 2)])
def test_conv_and_batchnorm_gain_monte_carlo(groups: int, stride: int) -> None:
    rng = np.random.default_rng(8)
    weight = 0.3 * rng.standard_normal((6, 4 // groups, 3, 3))
    sigma = 0.5
    noise = sigma * rng.standard_normal((4, 768, 768))
    out = _conv2d(noise, weight, stride, groups)
    conv_gain = est.conv_channel_noise_gain(weight)
    gamma, running_var, eps = rng.uniform(0.2, 2.0, 6), rng.uniform(0.01, 3.0, 6), 1e-5
    bn_gain = est.batchnorm_gain(gamma, running_var, eps)
    # eval-mode BN is affine per channel: its noise part is gamma / sqrt(var + eps) times the input's
    normalized = gamma[:, None, None] * out / np.sqrt(running_var + eps)[:, None, None]
    for c in range(6):
        _assert_close(_power(out[c]) / sigma**2, conv_gain[c])
        _assert_close(_power(normalized[c]) / sigma**2, conv_gain[c] * bn_gain[c])


# -------------------------------------------------------------------------------- patch embedding


@pytest.mark.parametrize(
    ("name", "patch", "dim", "expected"),
    [
        ("Ti/16", 16, 192, 576),
        ("S/16", 16, 384, 384),
        ("B/16", 16, 768, 0),
        ("B/32", 32, 768, 2304),
        ("L/14", 14, 1024, 0),
    ],
)
def test_patch_nullspace_dim_of_vits(name: str, patch: int, dim: int, expected: int) -> None:
    assert est.patch_nullspace_dim(patch, 3, dim) == expected, name


def _rank_deficient_weight(rng: np.random.Generator) -> np.ndarray:
    """A (64, 3, 4, 4) weight of rank 20: D >= C p^2 = 48 yet a 28-dim nullspace."""
    return (
        (rng.standard_normal((64, 20)) @ rng.standard_normal((20, 48)))
        .reshape(64, 3, 4, 4)
        .astype(np.float32)
    )


@pytest.mark.parametrize(("kind", "rank"), [("wide", 32), ("deficient", 20)])
def test_patch_embed_noise_share_monte_carlo(kind: str, rank: int) -> None:
    rng = np.random.default_rng(9)
    weight = rng.standard_normal((32, 3, 4, 4)) if kind == "wide" else _rank_deficient_weight(rng)
    info = est.patch_embed_noise_share(weight)
    assert (info.input_dim, info.rank, info.nullspace_dim) == (48, rank, 48 - rank)
    if kind == "wide":
        assert info.nullspace_dim == est.patch_nullspace_dim(4, 3, 32)
    matrix = weight.reshape(weight.shape[0], -1).astype(np.float64)
    null_basis = np.linalg.svd(matrix)[2][rank:]  # rows span the nullspace
    z = rng.standard_normal((100_000, 48))
    z_null = (z @ null_basis.T) @ null_basis
    round_off = max(1e-9, 100 * np.finfo(weight.dtype).eps)  # a float32 weight's nullspace is float32-exact
    assert np.abs(z_null @ matrix.T).max() <= round_off * np.abs(z @ matrix.T).max()
    _assert_close(_power(z - z_null) / _power(z), info.passed_share)
    _assert_close(float(np.mean(np.sum((z @ matrix.T) ** 2, axis=1))), info.noise_gain)


def test_patch_embed_noise_share_tolerance() -> None:
    weight = _rank_deficient_weight(np.random.default_rng(10))
    assert est.patch_embed_noise_share(weight).rank == 20  # float32 round-off is not rank
    assert est.patch_embed_noise_share(weight, rtol=1e-30).rank > 20
    with pytest.raises(ValueError, match="weight"):
        est.patch_embed_noise_share(np.ones(3))


# ---------------------------------------------------------------------------------------- estimates


def _check_common(estimate: Estimate, basis: Basis = Basis.ANALYTIC) -> None:
    assert estimate.basis is basis
    assert estimate.quantity
    assert estimate.formula
    assert estimate.assumptions
    assert estimate.references
    if estimate.factor is not None:
        assert estimate.factor == pytest.approx(estimate.proposed / estimate.current)


def test_max_pool_estimate() -> None:
    estimate = est.max_pool_estimate((3, 3))
    _check_common(estimate)
    assert estimate.quantity == "noise MSE at this pooling stage"
    assert estimate.current == pytest.approx(2.5626, abs=5e-5)
    assert estimate.proposed == pytest.approx(1 / 9)
    assert estimate.factor == pytest.approx(0.0434, abs=5e-5)
    assert estimate.assumptions == (
        "noise-only input: i.i.d. N(0, s^2) per value in the window",
        "average pooling with the same window and stride",
    )
    assert est.GUIDELINES_REF in estimate.references
    assert est.max_pool_estimate((2, 3)).current == pytest.approx(est.max_pool_mse(6))
    assert est.global_max_pool_estimate(49).factor == pytest.approx(0.0204 / 5.2397, rel=1e-3)


def test_stem_and_patch_estimates() -> None:
    single = est.stem_kernel_estimate(3, 7)
    _check_common(single)
    assert (single.current, single.proposed) == (pytest.approx(1 / 9), pytest.approx(1 / 49))
    assert single.factor == pytest.approx(9 / 49)
    stack = est.stem_kernel_estimate(7, [(3, 2), (3, 1), (3, 1)])
    assert stack.proposed == pytest.approx(est.composed_box_gain([3, 3, 3], [2, 1, 1]))
    assert "receptive field 11" in stack.formula
    patch = est.patch_size_estimate(16, 32)
    _check_common(patch)
    assert patch.factor == pytest.approx(0.25)
    assert patch.sigma_factor == pytest.approx(0.5)


def test_downsampling_estimates() -> None:
    for estimate in (est.antialias_estimate(2), est.subsample_estimate(2)):
        _check_common(estimate)
        assert (estimate.current, estimate.proposed, estimate.factor) == (1.0, 0.25, 0.25)


def test_normalization_estimate() -> None:
    clip = est.normalization_estimate(est.CLIP_STD)
    _check_common(clip)
    assert clip.quantity == "pixel-space Lipschitz bound"
    assert clip.current == pytest.approx(1.9135, abs=5e-5)
    assert clip.factor == pytest.approx(1 / 1.9135, abs=5e-5)
    assert clip.sigma_factor == clip.factor  # a Lipschitz bound is not a variance
    assert "CLIP vs supervised ViTs" in clip.assumptions[0]
    assert est.normalization_estimate(est.INCEPTION_STD).factor == 1.0


def test_resolution_estimate_is_unknown() -> None:
    estimate = est.resolution_estimate(384, 224)
    _check_common(estimate, Basis.EMPIRICAL)
    assert estimate.factor is None
    assert estimate.sigma_factor is None
    assert "unknown" in estimate.formula
    assert "unknown" in estimate.summary()


def test_patch_nullspace_estimate() -> None:
    b16 = est.patch_nullspace_estimate(16, 3, 768)
    _check_common(b16)
    assert (b16.current, b16.factor) == (1.0, 1.0)
    to_b32 = est.patch_nullspace_estimate(16, 3, 768, proposed_patch=32)
    assert (to_b32.proposed, to_b32.factor) == (pytest.approx(0.25), pytest.approx(0.25))
    assert est.patch_nullspace_estimate(16, 3, 192).current == pytest.approx(0.25)  # ViT-Ti/16
    assert est.NULLSPACE_REF in b16.references


# ---------------------------------------------------------------------------------------- exposure


def _exposure(*findings) -> float:
    """A model's exposure as the engine computes it, from its findings' estimates."""
    return est.combine_exposure(t for t in map(est.advice_term, findings) if t is not None)


def test_exposure_ranks_models() -> None:
    imagenet_std = est.normalization_estimate(est.IMAGENET_STD)
    with_max_pool = _exposure(est.max_pool_estimate((3, 3)), imagenet_std)
    with_avg_pool = _exposure(imagenet_std)  # average pooling: no finding
    assert with_max_pool - with_avg_pool == pytest.approx(math.log10(2.5626 * 9), abs=1e-4)
    b16 = _exposure(est.patch_nullspace_estimate(16, 3, 768, proposed_patch=32))
    b32 = _exposure()  # ViT-B/32 has a nullspace: no finding
    assert b32 < b16
    assert _exposure(est.normalization_estimate(est.CLIP_STD)) > _exposure()


def test_exposure_definition() -> None:
    assert est.combine_exposure([]) == 0.0
    assert est.combine_exposure([10.0, 0.1, 100.0]) == pytest.approx(2.0)
    clip = est.normalization_estimate(est.CLIP_STD)
    assert est.advice_term(clip) == pytest.approx(clip.current**2)
    assert est.advice_term(est.max_pool_estimate((3, 3))) == pytest.approx(2.5626 * 9, abs=5e-4)
    assert est.advice_term(est.resolution_estimate(384, 224)) is None
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive and finite"):
            est.combine_exposure([1.0, bad])


# ------------------------------------------------------------------------------- rule-pack additions


@pytest.mark.parametrize("n", [1, 4, 49])
def test_avgmax_pool_monte_carlo(n: int) -> None:
    values = np.random.default_rng(10).standard_normal((400_000, n))
    pooled = (values.mean(axis=1) + values.max(axis=1)) / 2
    _assert_close(_power(pooled), est.avgmax_pool_mse(n))
    estimate = est.global_avgmax_pool_estimate(n)
    assert estimate.current == pytest.approx(est.avgmax_pool_mse(n))
    assert estimate.factor == pytest.approx(est.avg_pool_mse(n) / est.avgmax_pool_mse(n))


def test_unknown_window_pool_estimate_says_unknown() -> None:
    estimate = est.unknown_window_pool_estimate()
    assert estimate.factor is None and est.advice_term(estimate) is None
    assert "unknown" in estimate.summary()


def test_weight_estimates_monte_carlo() -> None:
    rng = np.random.default_rng(11)
    weight = 0.4 * rng.standard_normal((5, 3, 3, 3))
    out = _conv2d(rng.standard_normal((3, 512, 512)), weight)
    measured = np.array([_power(out[c]) for c in range(5)])
    stem = est.stem_weight_estimate(weight, cap=1.0)
    _assert_close(float(measured.mean()), stem.current)
    assert stem.proposed == pytest.approx(np.minimum(est.conv_channel_noise_gain(weight), 1.0).mean())
    gamma, running_var = rng.uniform(0.5, 2.0, 5), rng.uniform(0.05, 1.0, 5)
    scaled = gamma[:, None, None] * out / np.sqrt(running_var + 1e-5)[:, None, None]
    bn_gains = np.array([_power(scaled[c]) / measured[c] for c in range(5)])
    bn = est.batchnorm_weight_estimate(gamma, running_var, 1e-5, cap=2.0)
    _assert_close(float(bn_gains.mean()), bn.current)
    assert bn.factor == pytest.approx(np.minimum(bn_gains, 2.0).mean() / bn_gains.mean(), rel=TOLERANCE)


def test_patch_weight_estimate() -> None:
    rng = np.random.default_rng(12)
    info = est.patch_embed_noise_share(_rank_deficient_weight(rng))  # rank 20 of 48
    estimate = est.patch_weight_estimate(info, proposed_patch=8, embed_dim=64, in_chans=3)
    assert estimate.current == pytest.approx(20 / 48)
    assert estimate.proposed == pytest.approx(64 / 192)
    assert estimate.factor == pytest.approx((64 / 192) / (20 / 48))


def test_advice_term_is_the_inverse_variance_factor() -> None:
    assert est.advice_term(est.stem_kernel_estimate(3, 7)) == pytest.approx(49 / 9)
    clip = est.normalization_estimate(est.CLIP_STD)
    assert est.advice_term(clip) == pytest.approx(clip.current**2)
    assert est.advice_term(est.resolution_estimate(384, 224)) is None


def test_unknown_normalization_estimate_says_unknown() -> None:
    estimate = est.unknown_normalization_estimate()
    assert estimate.factor is None and estimate.sigma_factor is None and est.advice_term(estimate) is None
    assert "unknown" in estimate.summary()
