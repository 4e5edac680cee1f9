"""Closed-form noise figures behind noiselint's predicted gains, and the :class:`Estimate` builders.

Noise model throughout: additive white Gaussian noise, i.i.d. N(0, s^2) per pixel and channel. A
*variance factor* is output noise variance / input noise variance (units of s^2), so it does not
depend on s. The formulas are derived from first principles (see ``/work/shared/RESEARCH.md``
section 2) and each is checked against Monte Carlo sampling in ``tests/test_estimates.py``; the
only figures quoted from arXiv:2509.20939 are those of its abstract.

Pure functions: numpy only at import time, no scipy, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from noiselint.findings import Basis, Estimate

GUIDELINES_REF = "arXiv:2509.20939"  # Kim et al. 2025, noise-robust vision design rules
NULLSPACE_REF = "arXiv:2403.10476"  # Liu et al. 2024, patch-embedding nullspace of ViTs
ROBUST_LAYERS_REF = "arXiv:2603.12799"  # robustness of vision(-language) models lives in shallow layers

#: Inception-style normalization std, the reference of the Lipschitz comparison.
REFERENCE_STD = 0.5
INCEPTION_STD = (REFERENCE_STD,) * 3
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

WHITE_NOISE = "white input noise: i.i.d. N(0, s^2) per pixel and channel"

Stem = int | Sequence[tuple[int, int]]
"""A stem: ``k`` for one k x k conv, or ``[(kernel, stride), ...]`` for a stack of convs."""


def _positive_int(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Linear filters


def filter_noise_gain(kernel: np.ndarray) -> float:
    """White-noise variance gain of a linear filter: sum(h^2) over its taps (exact, any shape)."""
    h = np.asarray(kernel, dtype=np.float64)
    return float(np.sum(h * h))


def box_filter_gain(k: int) -> float:
    """Gain of a k x k mean filter: 1/k^2, the least sum(h^2) of any k x k filter with sum(h) = 1."""
    return 1.0 / _positive_int("k", k) ** 2


def _check_stack(kernels: Sequence[int], strides: Sequence[int]) -> list[tuple[int, int]]:
    if len(kernels) != len(strides) or not kernels:
        raise ValueError(f"need one stride per kernel, got kernels={kernels!r} strides={strides!r}")
    return [
        (_positive_int("kernel", k), _positive_int("stride", s))
        for k, s in zip(kernels, strides, strict=True)
    ]


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Receptive field of a conv stack in input pixels: 1 + sum_i (k_i - 1) * prod_{j<i} s_j."""
    field, jump = 1, 1
    for k, s in _check_stack(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return field


def composed_kernel(kernels: Sequence[int], strides: Sequence[int]) -> tuple[int, np.ndarray]:
    """(receptive field, 2-D kernel) of a stack of k_i x k_i mean filters with strides s_i.

    Layer i, seen from the input, is its box dilated by the product of the earlier strides; the
    stack's output at each of its (strided) positions is the input correlated with the convolution
    of those dilated boxes. The kernel is separable, sums to 1, and is in input-pixel units.
    """
    h, jump = np.ones(1), 1
    for k, s in _check_stack(kernels, strides):
        dilated = np.zeros((k - 1) * jump + 1)
        dilated[::jump] = 1.0 / k
        h = np.convolve(h, dilated)
        jump *= s
    return len(h), np.outer(h, h)


def composed_box_gain(kernels: Sequence[int], strides: Sequence[int]) -> float:
    """White-noise gain of a stack of mean filters: sum(h^2) of :func:`composed_kernel` (exact).

    The strides only pick which outputs are kept, so every output sample has this variance factor.
    One k x k layer gives 1/k^2; the ResNet-C/D deep stem (3 s2, 3, 3) gives 0.0149 (7x7: 0.0204).
    """
    return filter_noise_gain(composed_kernel(kernels, strides)[1])


def downsample_gain(stride: int, anti_aliased: bool) -> float:
    """Noise variance kept per output sample by a stride-s downsampling of white noise.

    Plain strided subsampling (a strided 1x1 conv, nearest-neighbour) keeps every sample's
    variance: 1.0. An ideal low-pass filter with cutoff pi/s per axis before it keeps 1/s^2. A real
    blur differs: an s x s mean filter gives exactly 1/s^2, the binomial [1,2,1]^2 gives 0.141.
    """
    stride = _positive_int("stride", stride)
    return 1.0 / stride**2 if anti_aliased else 1.0


# --------------------------------------------------------------------------------------------------
# Pooling (noise only: the clean values in the window are equal, the worst case for max pooling)


def _max_normal_moment(n: int, power: int) -> float:
    """E[M^power] for M the max of n i.i.d. N(0,1): integral of x^p * n phi(x) Phi(x)^(n-1).

    The trapezoid rule with step 0.01 on [-12, 12]: the integrand is smooth and decays like a
    Gaussian, so the rule converges geometrically (within 1e-12 of scipy's adaptive quadrature up to
    n = 1e5, in 1 ms); pure ``math`` keeps scipy (0.4 s to import) off every linting run.
    """
    n = _positive_int("n", n)
    total = 0.0
    for i in range(-1200, 1201):
        x = i * 0.01
        total += x**power * math.exp(-0.5 * x * x + (n - 1) * math.log(0.5 * math.erfc(-x / math.sqrt(2))))
    return total * 0.01 * n / math.sqrt(2 * math.pi)


def expected_max_normal(n: int) -> float:
    """E[max of n i.i.d. N(0,1)] by numerical integration: 1.0294 at n=4, 1.4850 at n=9."""
    return _max_normal_moment(n, 1)


def var_max_normal(n: int) -> float:
    """Var[max of n i.i.d. N(0,1)]: E[M^2] - E[M]^2, by numerical integration."""
    return _max_normal_moment(n, 2) - expected_max_normal(n) ** 2


def max_pool_mse(n: int) -> float:
    """MSE of max pooling over n noise-only values, in units of s^2: E[max]^2 + Var[max]."""
    return expected_max_normal(n) ** 2 + var_max_normal(n)


def avg_pool_mse(n: int) -> float:
    """MSE of average pooling over n noise values, in units of s^2: 1/n, unbiased."""
    return 1.0 / _positive_int("n", n)


def avgmax_pool_mse(n: int) -> float:
    """MSE of timm's avgmax pooling, (mean + max)/2 over n noise values, in units of s^2.

    The mean is independent of the deviations from it, so Cov(mean, max) = Var(mean) = 1/n and
    MSE = (E[max]^2 + Var[max] + 3/n) / 4.
    """
    return (max_pool_mse(n) + 3.0 / _positive_int("n", n)) / 4.0


# --------------------------------------------------------------------------------------------------
# Input normalization


def lipschitz_factors(std: Sequence[float], reference: float = REFERENCE_STD) -> tuple[float, ...]:
    """Per-channel reference/std: how much (x - mean)/std amplifies pixel noise against std=reference.

    A network behind (x - mean)/std sees pixel noise s as s/std_c per channel, so its pixel-space
    Lipschitz bound scales by max_c 1/std_c. CLIP std gives 1.861/1.913/1.813 against 0.5.
    """
    values = tuple(float(v) for v in std)
    if not values or min(values) <= 0 or reference <= 0:
        raise ValueError(f"std and reference must be positive, got std={std!r} reference={reference!r}")
    return tuple(reference / v for v in values)


def worst_channel(std: Sequence[float], reference: float = REFERENCE_STD) -> tuple[int, float]:
    """(index, factor) of the channel with the largest reference/std, the one that sets the bound."""
    factors = lipschitz_factors(std, reference)
    index = max(range(len(factors)), key=factors.__getitem__)
    return index, factors[index]


# --------------------------------------------------------------------------------------------------
# Patch embedding and real weights


def patch_nullspace_dim(patch: int, in_chans: int, embed_dim: int) -> int:
    """Least nullspace dimension of a p x p patch embed to D dims: max(0, C p^2 - D) (ViT-B/32: 2304)."""
    n = _positive_int("in_chans", in_chans) * _positive_int("patch", patch) ** 2
    return max(0, n - _positive_int("embed_dim", embed_dim))


@dataclass(frozen=True)
class PatchEmbedNoise:
    """White-noise figures of a real patch-embedding weight W of shape (D, C, p, p).

    ``input_dim`` n = C p^2 values per patch. ``rank`` r: numerical rank of W as a D x n matrix.
    ``nullspace_dim`` n - r: noise in that subspace is mapped to exactly zero. ``passed_share`` r/n:
    the expected fraction of white-noise energy outside the nullspace, i.e. that reaches the model
    at all (E||P z||^2 / E||z||^2 with P the projector on W's row space). ``noise_gain`` ||W||_F^2:
    E||W z||^2 / s^2, the summed output noise variance over the D embedding dims (bias excluded),
    which says how much of what passes is amplified.
    """

    input_dim: int
    rank: int
    nullspace_dim: int
    passed_share: float
    noise_gain: float


def patch_embed_noise_share(weight: np.ndarray, rtol: float | None = None) -> PatchEmbedNoise:
    """:class:`PatchEmbedNoise` of a (D, C, p, p) weight, rank from an SVD.

    Singular values above ``rtol * max singular value`` count; the default tolerance is numpy's
    ``matrix_rank`` one for the weight's own dtype, max(D, n) * eps (float32 weights: eps = 1.2e-7).
    """
    w = np.asarray(weight)
    if w.ndim < 2:
        raise ValueError(f"expected a (D, C, p, p) weight, got shape {w.shape}")
    eps = np.finfo(w.dtype).eps if np.issubdtype(w.dtype, np.floating) else np.finfo(np.float64).eps
    matrix = w.reshape(w.shape[0], -1).astype(np.float64)
    d, n = matrix.shape
    singular = np.linalg.svd(matrix, compute_uv=False)
    tol = (max(d, n) * eps if rtol is None else rtol) * (singular[0] if singular.size else 0.0)
    rank = int(np.sum(singular > tol))
    return PatchEmbedNoise(
        input_dim=n,
        rank=rank,
        nullspace_dim=n - rank,
        passed_share=rank / n,
        noise_gain=float(np.sum(matrix * matrix)),
    )


def conv_channel_noise_gain(weight: np.ndarray) -> np.ndarray:
    """Per output channel ||W[c]||^2 (sum over input channels and taps) for a weight (out, in/g, ...).

    Exact output-noise variance / input-noise variance of that channel for white input noise, for
    any kernel size, stride, dilation or groups (a grouped conv's W[c] holds only its group's inputs).
    Linear layers (out, in) too.
    """
    w = np.asarray(weight, dtype=np.float64)
    return np.sum(w.reshape(w.shape[0], -1) ** 2, axis=1)


def batchnorm_gain(gamma: np.ndarray, running_var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-channel variance factor of an eval-mode BatchNorm: (gamma / sqrt(running_var + eps))^2."""
    gamma = np.asarray(gamma, dtype=np.float64)
    return gamma**2 / (np.asarray(running_var, dtype=np.float64) + eps)


# --------------------------------------------------------------------------------------------------
# Estimate builders: one per rule family. factor = proposed / current of the stated quantity.


def max_pool_estimate(window: tuple[int, int]) -> Estimate:
    """Max -> average pooling with the same window: noise MSE E[max]^2 + Var[max] -> 1/n (3x3: x0.0434)."""
    kh, kw = (_positive_int("window", v) for v in window)
    return _pool_estimate(kh * kw, "noise MSE at this pooling stage", f"{kh}x{kw}")


def global_max_pool_estimate(n_values: int) -> Estimate:
    """Global max -> global average pooling over n = H*W values, as :func:`max_pool_estimate`."""
    n = _positive_int("n_values", n_values)
    return _pool_estimate(n, "noise MSE at global pooling", f"global ({n} values)")


def global_avgmax_pool_estimate(n_values: int) -> Estimate:
    """Global avgmax -> global average pooling over n = H*W values (:func:`avgmax_pool_mse` -> 1/n)."""
    n = _positive_int("n_values", n_values)
    current, proposed = avgmax_pool_mse(n), avg_pool_mse(n)
    return Estimate(
        quantity="noise MSE at global pooling",
        factor=proposed / current,
        basis=Basis.ANALYTIC,
        formula=(
            f"global avgmax pool (mean + max)/2, n={n}: MSE = (E[max]^2 + Var[max] + 3/n)/4 = "
            f"{current:.4f} s^2; average pool: 1/n = {proposed:.4f} s^2, unbiased"
        ),
        assumptions=("noise-only input: i.i.d. N(0, s^2) per value in the window",),
        references=(GUIDELINES_REF,),
        current=current,
        proposed=proposed,
    )


def unknown_window_pool_estimate() -> Estimate:
    """Max -> average pooling over a window of unknown size: the direction is known, the factor is not."""
    return Estimate(
        quantity="noise MSE at this pooling stage",
        factor=None,
        basis=Basis.ANALYTIC,
        formula="max over n values: MSE E[max]^2 + Var[max] (n=4: 1.55 s^2); average: 1/n; n is unknown here",
        assumptions=("noise-only input: i.i.d. N(0, s^2) per value in the window", "window size not traced"),
        references=(GUIDELINES_REF,),
    )


def _pool_estimate(n: int, quantity: str, label: str) -> Estimate:
    e_max, v_max = expected_max_normal(n), var_max_normal(n)
    current, proposed = e_max**2 + v_max, avg_pool_mse(n)
    return Estimate(
        quantity=quantity,
        factor=proposed / current,
        basis=Basis.ANALYTIC,
        formula=(
            f"{label} max pool, n={n}: MSE = E[max]^2 + Var[max] = {e_max:.4f}^2 + {v_max:.4f} "
            f"= {current:.4f} s^2 (bias +{e_max:.4f} s); average pool: 1/n = {proposed:.4f} s^2, unbiased"
        ),
        assumptions=(
            "noise-only input: i.i.d. N(0, s^2) per value in the window",
            "average pooling with the same window and stride",
        ),
        references=(GUIDELINES_REF,),
        current=current,
        proposed=proposed,
    )


def _stem_gain(stem: Stem) -> tuple[float, str]:
    if isinstance(stem, int | np.integer):
        k = _positive_int("kernel", stem)
        return box_filter_gain(k), f"{k}x{k}: 1/{k * k}"
    kernels, strides = [k for k, _ in stem], [s for _, s in stem]
    layers = " > ".join(f"{k}x{k}/s{s}" for k, s in stem)
    field = receptive_field(kernels, strides)
    return composed_box_gain(kernels, strides), f"{layers} (receptive field {field}): sum(h^2)"


def stem_kernel_estimate(current: Stem, proposed: Stem) -> Estimate:
    """Stem change as box (mean) filter gains: 1/k^2 for one k x k conv, the composed sum(h^2) for a stack.

    ``current``/``proposed``: an int k, or a list of (kernel, stride) for a conv stack.
    """
    cur, cur_text = _stem_gain(current)
    new, new_text = _stem_gain(proposed)
    return Estimate(
        quantity="noise variance after the stem filter",
        factor=new / cur,
        basis=Basis.ANALYTIC,
        formula=f"mean-filter gain {cur_text} = {cur:.4f} -> {new_text} = {new:.4f}",
        assumptions=(
            WHITE_NOISE,
            (
                "each stem conv acts as a k x k mean (low-pass) filter, the least-noise filter with unit "
                "DC gain; learned kernels pass more noise (their exact gain is ||W[c]||^2)"
            ),
            "padding and image borders ignored",
        ),
        references=(GUIDELINES_REF,),
        current=cur,
        proposed=new,
    )


def patch_size_estimate(current_p: int, proposed_p: int) -> Estimate:
    """Patch size p -> p' as p x p mean filters with stride p: noise gain 1/p^2 -> 1/p'^2."""
    p, q = _positive_int("current_p", current_p), _positive_int("proposed_p", proposed_p)
    cur, new = box_filter_gain(p), box_filter_gain(q)
    return Estimate(
        quantity="noise variance after patch embedding",
        factor=new / cur,
        basis=Basis.ANALYTIC,
        formula=f"patch averaging gain 1/p^2: 1/{p * p} = {cur:.3g} -> 1/{q * q} = {new:.3g}",
        assumptions=(
            WHITE_NOISE,
            (
                "the patch embedding acts as a p x p mean (low-pass) filter with stride p; a learned "
                "embedding is not one (its exact gain is ||W||_F^2, its nullspace blocks C p^2 - D dims)"
            ),
            "the input resolution is unchanged, so the token count falls by (p'/p)^2",
        ),
        references=(GUIDELINES_REF,),
        current=cur,
        proposed=new,
    )


def antialias_estimate(stride: int) -> Estimate:
    """Plain strided downsampling -> low-pass then stride: noise per output sample 1 -> 1/s^2."""
    s = _positive_int("stride", stride)
    cur, new = downsample_gain(s, anti_aliased=False), downsample_gain(s, anti_aliased=True)
    return Estimate(
        quantity="noise variance per sample after downsampling",
        factor=new / cur,
        basis=Basis.ANALYTIC,
        formula=f"stride {s}: plain subsampling keeps {cur:g}; ideal low-pass (cutoff pi/{s}): 1/{s * s}",
        assumptions=(
            "white noise at the input of the downsampling",
            (
                f"an ideal low-pass filter with cutoff pi/{s} per axis before subsampling; an {s}x{s} mean "
                "filter gives the same figure, a binomial blur removes more noise and some in-band signal"
            ),
        ),
        references=(GUIDELINES_REF,),
        current=cur,
        proposed=new,
    )


def subsample_estimate(stride: int) -> Estimate:
    """Strided 1x1 conv shortcut -> s x s average pool then 1x1 conv (ResNet-D): noise 1 -> 1/s^2."""
    s = _positive_int("stride", stride)
    cur, new = 1.0, box_filter_gain(s)
    return Estimate(
        quantity="noise variance per sample after downsampling",
        factor=new / cur,
        basis=Basis.ANALYTIC,
        formula=f"stride {s}: nearest subsampling keeps 1; {s}x{s} average pool with stride {s}: 1/{s * s}",
        assumptions=(
            "white noise at the input of the shortcut",
            "the same 1x1 conv weights behind both; only the s x s averaging is added",
        ),
        references=(GUIDELINES_REF,),
        current=cur,
        proposed=new,
    )


def normalization_estimate(std: Sequence[float], reference: float = REFERENCE_STD) -> Estimate:
    """Input std -> ``reference`` (Inception 0.5): the pixel-space Lipschitz bound falls by max(ref/std).

    ``current`` is max_c reference/std_c (CLIP: 1.913, the abstract's 1.91x), ``proposed`` 1; the
    factor is their ratio. A std above the reference gives a factor above 1 (no gain).
    """
    channel, worst = worst_channel(std, reference)
    return Estimate(
        quantity="pixel-space Lipschitz bound",
        scales_sigma=True,
        factor=1.0 / worst,
        basis=Basis.ANALYTIC,
        formula=(
            f"(x - mean)/std scales pixel noise by 1/std: max_c {reference:g}/std_c = "
            f"{reference:g}/{float(std[channel]):.4g} = {worst:.3f} (channel {channel}) -> 1"
        ),
        assumptions=(
            "same network behind both input scalings; the paper's evidence is CLIP vs supervised ViTs",
            "a worst-case (Lipschitz) bound, not an average-case noise figure",
        ),
        references=(GUIDELINES_REF,),
        current=worst,
        proposed=1.0,
    )


def unknown_normalization_estimate(reference: float = REFERENCE_STD) -> Estimate:
    """Input std unknown: the Lipschitz factor max_c reference/std_c cannot be computed (factor None)."""
    return Estimate(
        quantity="pixel-space Lipschitz bound",
        scales_sigma=True,
        factor=None,
        basis=Basis.ANALYTIC,
        formula=f"max_c {reference:g}/std_c needs the input std, which is unknown",
        assumptions=("the normalization std is not stated by the model, its config or the command line",),
        references=(GUIDELINES_REF,),
    )


def resolution_estimate(current: int | tuple[int, int], proposed: int | tuple[int, int]) -> Estimate:
    """Input resolution change: an empirical zoo trend with no formula, so the factor is unknown (None)."""
    return Estimate(
        quantity="accuracy under Gaussian noise",
        factor=None,
        basis=Basis.EMPIRICAL,
        formula=(
            f"no formula: in the paper's zoo of 1,174 models smaller input resolutions were more robust; "
            f"the gain of {current} -> {proposed} for this model is unknown"
        ),
        assumptions=("a correlation across the zoo, not a mechanism shown for this model",),
        references=(GUIDELINES_REF,),
    )


def resize_weights(n: int, m: int) -> np.ndarray:
    """(m, n) weights of an antialiased bilinear resize of n samples to m <= n (PIL, torch ``antialias``).

    The triangle filter is stretched by the scale s = n/m: output i reads input j with weight
    max(0, 1 - |(j + 0.5 - (i + 0.5) s)| / s), each row normalized to sum 1.
    """
    n, m = _positive_int("n", n), _positive_int("m", m)
    if m >= n:
        return np.eye(n)
    scale = n / m
    centers = (np.arange(m)[:, None] + 0.5) * scale
    w = np.maximum(0.0, 1.0 - np.abs(np.arange(n)[None, :] + 0.5 - centers) / scale)
    return w / w.sum(axis=1, keepdims=True)


def resize_noise_gain(size: int | tuple[int, int], target: int | tuple[int, int]) -> float:
    """White-noise variance kept per output pixel by an antialiased bilinear resize (exact, separable).

    The mean over output pixels of sum(w^2) is the product of the per-axis means: 48 -> 32 px keeps
    0.192 (torch's ``antialias=True`` agrees), where a box (area) resize would keep (m/n)^2 = 0.444;
    1 when the target is not smaller.
    """
    (h, w), (th, tw) = (_hw(size), _hw(target))
    gain = 1.0
    for n, m in ((h, th), (w, tw)):
        weights = resize_weights(n, m)
        gain *= float(np.mean(np.sum(weights * weights, axis=1)))
    return gain


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))


def sensor_resize_estimate(current: int | tuple[int, int], proposed: int | tuple[int, int]) -> Estimate:
    """Input resolution under the pre-resize sensor-noise protocol: noise added at the current input
    resolution, then resized to the proposed one before the model (antialiased bilinear).

    The factor is :func:`resize_noise_gain` of current -> proposed (384 -> 224: 0.151). With noise
    added after the resize (ImageNet-C style) this mechanism gives nothing: the factor is 1.
    """
    gain = resize_noise_gain(current, proposed)
    (h, w), (th, tw) = _hw(current), _hw(proposed)
    return Estimate(
        quantity="noise variance per pixel at the model input (noise at sensor resolution)",
        factor=gain,
        basis=Basis.ANALYTIC,
        formula=(
            f"antialiased bilinear resize {h}x{w} -> {th}x{tw}: mean sum(w^2) over output pixels = {gain:.3g} "
            f"(a box resize: {(th * tw) / (h * w):.3g})"
        ),
        assumptions=(
            "pre-resize sensor-noise protocol: white noise added at the current input resolution, then resized",
            "the image content survives the resize (its signal variance per pixel is about unchanged)",
            "noise added after the resize (ImageNet-C style) is not reduced: factor 1 under that protocol",
        ),
        references=(GUIDELINES_REF,),
        current=1.0,
        proposed=gain,
    )


def patch_nullspace_estimate(
    patch: int,
    in_chans: int,
    embed_dim: int,
    *,
    proposed_patch: int | None = None,
    proposed_embed_dim: int | None = None,
) -> Estimate:
    """Share of white-noise energy outside the patch embed's nullspace, now and for a proposed shape.

    share = 1 - nullspace/(C p^2) = min(D, C p^2)/(C p^2) for a full-rank embedding (ViT-B/16: 1,
    ViT-B/32: 0.25). The proposal defaults to the current shape (factor 1).
    """
    p = patch if proposed_patch is None else proposed_patch
    d = embed_dim if proposed_embed_dim is None else proposed_embed_dim
    n_cur, n_new = in_chans * patch**2, in_chans * p**2
    cur = 1 - patch_nullspace_dim(patch, in_chans, embed_dim) / n_cur
    new = 1 - patch_nullspace_dim(p, in_chans, d) / n_new
    return Estimate(
        quantity="share of white-noise energy that can reach the model",
        factor=new / cur,
        basis=Basis.ANALYTIC,
        formula=(
            f"1 - max(0, C p^2 - D)/(C p^2): p={patch}, D={embed_dim}: {cur:.3g} -> p={p}, D={d}: {new:.3g}"
        ),
        assumptions=(
            "white noise, i.i.d. per pixel and channel within each patch",
            "a full-rank patch embedding (rank min(D, C p^2)); with real weights the rank comes from an SVD",
            "counts the energy that reaches the embedding at all, not its amplification (||W||_F^2)",
        ),
        references=(NULLSPACE_REF,),
        current=cur,
        proposed=new,
    )


def _capped_gain_estimate(
    quantity: str, gains: np.ndarray, cap: float, formula: str, assumption: str
) -> Estimate:
    """Mean per-channel gain now, and with every channel above ``cap`` brought down to it."""
    current, proposed = float(np.mean(gains)), float(np.mean(np.minimum(gains, cap)))
    worst = int(np.argmax(gains))
    return Estimate(
        quantity=quantity,
        factor=proposed / current,
        basis=Basis.ANALYTIC,
        formula=(
            f"{formula}: mean over {gains.size} channels {current:.3g} (worst, channel {worst}: "
            f"{float(gains[worst]):.3g}) -> {proposed:.3g} with the {int(np.sum(gains > cap))} channels "
            f"above {cap:g} capped at {cap:g}"
        ),
        assumptions=(
            "white noise at the layer input, i.i.d. N(0, s^2) per value, in the units the layer sees",
            assumption,
            "a sensitivity figure: the clean signal is scaled by the same layer",
        ),
        references=(ROBUST_LAYERS_REF,),
        current=current,
        proposed=proposed,
    )


def stem_weight_estimate(weight: np.ndarray, cap: float = 1.0) -> Estimate:
    """A real stem conv's per-channel white-noise gains ||W[c]||^2, those above ``cap`` capped at it."""
    return _capped_gain_estimate(
        "noise variance after the stem conv (mean over channels)",
        conv_channel_noise_gain(weight),
        cap,
        "||W[c]||^2, summed over input channels and taps (exact for a linear conv)",
        "bias and the activation after the conv ignored",
    )


def batchnorm_weight_estimate(
    gamma: np.ndarray, running_var: np.ndarray, eps: float, cap: float = 1.0
) -> Estimate:
    """A real eval-mode BatchNorm's gains gamma^2/(var + eps) per channel, those above ``cap`` capped."""
    return _capped_gain_estimate(
        "noise variance after the BatchNorm (mean over channels)",
        batchnorm_gain(gamma, running_var, eps),
        cap,
        f"gamma^2 / (running_var + {eps:g}), exact per channel in eval mode for any noise",
        "eval mode: the running statistics are fixed",
    )


def patch_weight_estimate(
    noise: PatchEmbedNoise, proposed_patch: int, embed_dim: int, in_chans: int
) -> Estimate:
    """A real patch embed's passed share r/n against a full-rank embed with patch ``proposed_patch``."""
    proposed_n = in_chans * _positive_int("proposed_patch", proposed_patch) ** 2
    proposed = min(embed_dim, proposed_n) / proposed_n
    return Estimate(
        quantity="share of white-noise energy that can reach the model",
        factor=proposed / noise.passed_share,
        basis=Basis.ANALYTIC,
        formula=(
            f"rank {noise.rank} of {noise.input_dim} inputs (SVD of the real weight): "
            f"{noise.passed_share:.3g} passes -> patch {proposed_patch}, D={embed_dim}, full rank: "
            f"{proposed:.3g}"
        ),
        assumptions=(
            "white noise, i.i.d. per pixel and channel within each patch",
            "counts the energy that reaches the embedding at all, not its amplification (||W||_F^2)",
        ),
        references=(NULLSPACE_REF,),
        current=noise.passed_share,
        proposed=proposed,
    )


# --------------------------------------------------------------------------------------------------
# Model-level exposure


def advice_term(estimate: Estimate) -> float | None:
    """The noise-variance factor a finding's advice would remove: 1/factor, or None if unknown.

    A Lipschitz factor is squared first (a bound on sigma, not on variance). 1 means the advice
    changes nothing; 4 means following it cuts that stage's noise variance fourfold.
    """
    sigma = estimate.sigma_factor
    if sigma is None or not sigma > 0:
        return None
    return 1.0 / sigma**2


def combine_exposure(stage_factors: Iterable[float]) -> float:
    """Static noise exposure of a model: log10 of the product of its per-stage variance factors.

    The engine feeds it each finding's :func:`advice_term`, the noise-variance reduction that
    following that finding would bring at its stage (a 3x3 max pool: 23x; CLIP std: 1.913^2).
    0 means no finding with a known gain; each unit is a further tenfold of noise variance that the
    guidelines would remove. A heuristic ranking figure (basis analytic, each stage under its own
    assumptions): it treats the stages as independent, although noise leaving a filter is no longer
    white, and ignores everything between them. It ranks models; it does not predict accuracy.
    """
    total = 0.0
    for factor in stage_factors:
        if not factor > 0 or math.isinf(factor):
            raise ValueError(f"stage factors must be positive and finite, got {factor!r}")
        total += math.log10(factor)
    return total
