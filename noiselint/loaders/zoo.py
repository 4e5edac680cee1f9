"""Load models from the timm and torchvision registries, never downloading weights."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from noiselint.errors import LoadError, one_line
from noiselint.graph import Preprocessing
from noiselint.loaders import LoadedModel


def preprocessing_from_cfg(cfg: dict[str, Any], origin: str) -> Preprocessing:
    """Preprocessing from a timm ``pretrained_cfg`` dict."""

    def floats(value):
        return tuple(float(v) for v in value) if value is not None else None

    def size(value):
        return tuple(int(v) for v in value) if value is not None else None

    return Preprocessing(
        mean=floats(cfg.get("mean")),
        std=floats(cfg.get("std")),
        input_size=size(cfg.get("input_size")),
        test_input_size=size(cfg.get("test_input_size")),
        crop_pct=cfg.get("crop_pct"),
        origin=origin,
    )


def timm_names(pattern: str) -> list[str]:
    """timm models matching a wildcard; a pattern with a tag (``*.openai``) matches pretrained tags."""
    import timm

    names = timm.list_models(pattern, pretrained="." in pattern)
    if not names:
        raise LoadError(f"timm:{pattern}: no timm model matches")
    return names


def load_timm(target: str, *, device: str = "meta") -> list[LoadedModel]:
    """Build ``timm:NAME`` (or ``timm:NAME.TAG``) without weights; preprocessing from its pretrained_cfg."""
    import timm

    from noiselint.build import build
    from noiselint.sites import recording

    name = target[len("timm:"):]
    if not name:
        raise LoadError("timm: give a model name, e.g. timm:resnet50 or timm:'resnet*'")
    architecture = name.split(".", 1)[0]
    if not timm.is_model(architecture):
        raise LoadError(f"{target}: timm has no model {architecture!r}")
    models_dir = os.path.join(os.path.dirname(timm.__file__), "models")
    try:
        with recording(prefer=[models_dir]) as sites:
            built = build(lambda: timm.create_model(name, pretrained=False), target, device=device)
    except Exception as exc:  # noqa: BLE001 - timm raises many kinds for bad configurations
        raise LoadError(f"{target}: timm could not build it: {one_line(exc)}") from None
    model = built.model
    cfg = getattr(model, "pretrained_cfg", None) or {}
    tag = cfg.get("tag")
    origin = f"timm pretrained_cfg ({architecture}.{tag})" if tag else "timm pretrained_cfg"
    return [LoadedModel(name=target, target=target, module=model.eval(),
                        preprocessing=preprocessing_from_cfg(cfg, origin), sites=sites,
                        notes=[built.note] if built.note else [])]


def load_torchvision(target: str, *, device: str = "meta") -> list[LoadedModel]:
    """Build ``torchvision:NAME`` without weights; preprocessing from its default weights' transforms."""
    import torchvision.models as tvm

    from noiselint.build import build
    from noiselint.sites import recording

    name = target[len("torchvision:"):]
    if not name:
        raise LoadError("torchvision: give a model name, e.g. torchvision:resnet18")
    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        raise LoadError(f"{target}: torchvision has no model {name!r}") from None
    models_dir = os.path.dirname(tvm.__file__)
    try:
        with recording(prefer=[models_dir]) as sites:
            built = build(lambda: builder(weights=None), target, device=device)
    except Exception as exc:  # noqa: BLE001
        raise LoadError(f"{target}: torchvision could not build it: {one_line(exc)}") from None
    model = built.model
    notes = [built.note] if built.note else []
    preprocessing = _torchvision_preprocessing(name)
    own = getattr(model, "image_size", None)
    if isinstance(own, int) and preprocessing.input_size and preprocessing.input_size[1:] != (own, own):
        notes.append(f"the default weights' preprocessing crops to {preprocessing.input_size[1]} px, but "
                     f"the architecture as built takes {own} px: traced at {own}")
        preprocessing = replace(preprocessing, input_size=(3, own, own),
                                origin=f"{preprocessing.origin}, input size from the model's image_size")
    return [LoadedModel(name=target, target=target, module=model.eval(), preprocessing=preprocessing,
                        sites=sites, notes=notes)]


def _torchvision_preprocessing(name: str) -> Preprocessing:
    """Mean, std and crop size from the default weights' transforms (no download needed)."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(name).DEFAULT
        transform = weights.transforms()
    except Exception:  # noqa: BLE001 - models without published weights
        return Preprocessing()
    crop = getattr(transform, "crop_size", None)
    size = crop[0] if isinstance(crop, (list, tuple)) else crop
    resize = getattr(transform, "resize_size", None)
    resize = resize[0] if isinstance(resize, (list, tuple)) else resize
    return Preprocessing(
        mean=tuple(float(v) for v in transform.mean) if getattr(transform, "mean", None) else None,
        std=tuple(float(v) for v in transform.std) if getattr(transform, "std", None) else None,
        input_size=(3, int(size), int(size)) if size else None,
        crop_pct=round(size / resize, 4) if size and resize else None,
        origin=f"torchvision weights {weights}",
    )
