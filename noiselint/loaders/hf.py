"""Hugging Face ``transformers`` vision models, built on the meta device, never downloaded.

Targets:

* ``path/to/dir`` or ``hf:path/to/dir``: a folder ``save_pretrained`` wrote (``config.json``, usually
  ``preprocessor_config.json``; weights optional, only ``--verify`` reads them);
* ``hf:org/name`` (``hf:org/name@revision``): the same, from the local Hugging Face cache only;
* ``hf:MODEL_TYPE`` (``hf:vit``, ``hf:dinov2``, ``hf:clip_vision_model``): the architecture's default
  configuration (``AutoConfig.for_model``), preprocessing from its image processor's class defaults.

The model class is the checkpoint's own (``architectures`` in ``config.json``) when transformers has
it, else the image-classification model registered for the type, else the type's vision model
(``AutoModel``). A class whose forward starts with token ids (CLIPModel, SigLIP's, a
vision-language model) is linted through its vision tower (``vision_config``). A timm checkpoint,
which transformers reads through TimmWrapper, takes timm's own ``pretrained_cfg``.

Preprocessing follows what the image processor does to a [0, 1] image: ``image_mean`` / ``image_std``
behind ``do_rescale`` / ``rescale_factor`` / ``rescale_offset`` and ``do_normalize``, become mean and
std on [0, 1] pixels; the input size is ``crop_size`` when the processor center-crops, else ``size``
(``{"height", "width"}``, ``{"shortest_edge"}``, ``{"longest_edge"}`` or an int). A key the saved
file sets wins; a key it leaves out takes the processor class's default, as transformers itself
does, and the origin says which field came from where (some class defaults differ from what real
checkpoints ship: DINOv2's ``BitImageProcessor`` defaults to CLIP statistics, its checkpoints save
ImageNet's).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from noiselint.errors import LoadError, one_line
from noiselint.graph import Preprocessing
from noiselint.loaders import LoadedModel

PREFIX = "hf:"
INSTALL_HINT = "install transformers: pip install 'noiselint[hf]'"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
#: PIL resampling filter codes as image processors save them.
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def is_model_folder(path: str) -> bool:
    """A folder with a ``config.json``: what ``save_pretrained`` writes (no import needed)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def dependency_files(target: str) -> list[str] | None:
    """Files a report of ``target`` depends on (results cache): a folder's config and processor files;
    None (never cache) for the hub cache, whose snapshot may change; none for a model type."""
    spec = target[len(PREFIX):] if target.startswith(PREFIX) else target
    if os.path.isdir(spec):
        names = (CONFIG_FILE, *PREPROCESSOR_FILES)
        return [os.path.realpath(os.path.join(spec, n)) for n in names if os.path.isfile(os.path.join(spec, n))]
    if _REPO_ID.match(spec):
        return None
    return []


def load_hf(target: str, *, device: str = "meta") -> list[LoadedModel]:
    """Build the model ``target`` names; on ``device="cpu"`` a folder's own weights are loaded."""
    spec = target[len(PREFIX):] if target.startswith(PREFIX) else target
    if not spec:
        raise LoadError("hf: give a saved model folder, org/name from the local cache, or a model type (hf:vit)")
    transformers = _import_transformers(target)
    with _offline():
        if os.path.isdir(spec):
            if not is_model_folder(spec):
                raise LoadError(f"{target}: no {CONFIG_FILE} in the folder (save the model with save_pretrained)")
            return [_load_folder(target, spec, transformers, device, origin=spec)]
        if _REPO_ID.match(spec):
            return [_load_folder(target, _cached_snapshot(target, spec), transformers, device, origin=spec)]
        if "/" in spec or os.sep in spec or spec.startswith("."):
            raise LoadError(f"{target}: no such folder")
        return [_load_model_type(target, spec, transformers, device)]


def _import_transformers(target: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise LoadError(f"{target}: needs Hugging Face transformers; {INSTALL_HINT}") from None
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "Some weights were not initialized ..." is not the user's problem here
    hf_logging.disable_progress_bar()  # "Loading weights: 100%" on every --verify
    return transformers


@contextmanager
def _offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` while transformers runs: every call here also passes ``local_files_only``."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def _cached_snapshot(target: str, spec: str) -> str:
    """The local snapshot folder of ``org/name[@revision]``; a miss says how to make it available."""
    from huggingface_hub import snapshot_download

    repo, _, revision = spec.partition("@")
    try:
        folder = snapshot_download(repo_id=repo, revision=revision or None, local_files_only=True)
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and friends: all mean "not cached"
        raise LoadError(
            f"{target}: no folder {repo} here, and {repo} is not in the local Hugging Face cache (noiselint "
            f"never downloads); "
            f"run `hf download {repo}` where the hub is reachable (HF_HOME / HF_HUB_CACHE choose the cache), "
            f"or save the model with save_pretrained and lint that folder"
        ) from None
    if not is_model_folder(folder):
        raise LoadError(f"{target}: the cached snapshot has no {CONFIG_FILE} ({folder})")
    return folder


# --------------------------------------------------------------------------- building


def _load_folder(target: str, folder: str, transformers: Any, device: str, origin: str) -> LoadedModel:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a bad or unknown config.json
        raise LoadError(f"{target}: transformers cannot read {CONFIG_FILE}: {one_line(exc)}") from None
    weights = _weights_file(folder) if device != "meta" else None
    model, built, notes, sites = _build(target, config, transformers, device, folder=folder if weights else None)
    saved = _saved_processor(target, folder)
    timm_cfg = _timm_cfg(model, built, saved, origin)
    if timm_cfg is not None:  # a timm checkpoint (TimmWrapper): timm's own pretrained_cfg
        from noiselint.loaders.zoo import preprocessing_from_cfg

        preprocessing, more = preprocessing_from_cfg(*timm_cfg), []
    else:
        preprocessing, more = preprocessing_from_processor(
            saved, _processor_class(transformers, (config, built), saved),
            file_origin=os.path.join(origin, saved["_file"]) if saved else None,
            channels=getattr(built, "num_channels", 3) or 3)
    if saved is None and timm_cfg is None:
        more.insert(0, f"no preprocessor_config.json in {origin}: preprocessing is the image processor's "
                       "class defaults")
    preprocessing = _fit_image_size(model, built, preprocessing, more)
    return LoadedModel(name=target, target=target, module=model.eval(), preprocessing=preprocessing,
                       sites=sites, notes=notes + more,
                       **({"weights": f"{origin}/{weights}"} if weights else {}))


def _load_model_type(target: str, model_type: str, transformers: Any, device: str) -> LoadedModel:
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(model_type)
    except ValueError:
        raise LoadError(
            f"{target}: transformers {transformers.__version__} has no model type {model_type!r}; "
            f"give a type such as hf:vit or hf:dinov2, a saved model folder, or hf:org/name from the local cache"
        ) from None
    model, built, notes, sites = _build(target, config, transformers, device, folder=None)
    timm_cfg = _timm_cfg(model, built, None, None)
    if timm_cfg is not None:
        from noiselint.loaders.zoo import preprocessing_from_cfg

        preprocessing, more = preprocessing_from_cfg(*timm_cfg), []
    else:
        preprocessing, more = preprocessing_from_processor(
            None, _processor_class(transformers, (config, built), None), file_origin=None,
            channels=getattr(built, "num_channels", 3) or 3)
    preprocessing = _fit_image_size(model, built, preprocessing, more)
    return LoadedModel(name=target, target=target, module=model.eval(), preprocessing=preprocessing,
                       sites=sites, notes=[f"{model_type}: the architecture's default configuration", *notes, *more])


def _timm_cfg(model: Any, config: Any, saved: Mapping[str, Any] | None, origin: str | None) -> tuple | None:
    """(timm ``pretrained_cfg``, its origin) of a timm checkpoint read through TimmWrapper, else None:
    the processor file's copy, config.json's, or the timm model's own defaults."""
    where = f"{origin}/" if origin else ""
    for cfg, label in (((saved or {}).get("pretrained_cfg"), f"{where}{(saved or {}).get('_file')} pretrained_cfg"),
                       (getattr(config, "pretrained_cfg", None), f"{where}config.json pretrained_cfg"),
                       (getattr(getattr(model, "timm_model", None), "pretrained_cfg", None),
                        "timm pretrained_cfg (class defaults)")):
        if isinstance(cfg, Mapping) and cfg.get("std") is not None:
            return dict(cfg), label
    return None


def _weights_file(folder: str) -> str | None:
    return next((name for name in WEIGHT_FILES if os.path.isfile(os.path.join(folder, name))), None)


def _build(target: str, config: Any, transformers: Any, device: str, folder: str | None) -> tuple:
    """(model, the config it was built from, notes, construction sites); with ``folder``, its weights."""
    import torch

    from noiselint.meta import skip_meta_init
    from noiselint.sites import recording

    cls, config, notes = _model_class(target, config, transformers)
    models_dir = os.path.join(os.path.dirname(transformers.__file__), "models")
    try:
        with recording(prefer=[models_dir]) as sites:
            if folder is not None:
                model = cls.from_pretrained(folder, local_files_only=True, device_map=None)
            else:
                with torch.device(device), skip_meta_init():
                    model = cls._from_config(config)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for bad configurations
        what = f"load the weights in {folder}" if folder else "build it"
        raise LoadError(f"{target}: transformers could not {what}: {one_line(exc)}") from None
    return model, config, notes, sites


def _model_class(target: str, config: Any, transformers: Any) -> tuple[Any, Any, list[str]]:
    """The class to build (and the config to build it from): the checkpoint's, or a vision one."""
    from transformers.models.auto import modeling_auto

    classification = modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    vision = modeling_auto.MODEL_FOR_IMAGE_MAPPING_NAMES
    model_type = getattr(config, "model_type", "")
    vision_config = getattr(config, "vision_config", None)
    candidates = [getattr(transformers, name, None) for name in getattr(config, "architectures", None) or ()]
    candidates += [getattr(transformers, _name(mapping[model_type]), None)
                   for mapping in (classification, vision) if model_type in mapping]
    for cls in candidates:
        if cls is None:
            continue
        if vision_config is not None and _needs_text(cls):
            break  # CLIPModel, a VLM: lint the vision tower (below)
        return cls, config, []
    if model_type in modeling_auto.MODEL_MAPPING_NAMES and _is_vision_config(config):
        return getattr(transformers, _name(modeling_auto.MODEL_MAPPING_NAMES[model_type])), config, []
    vision_type = getattr(vision_config, "model_type", None)
    if vision_type in vision or vision_type in modeling_auto.MODEL_MAPPING_NAMES:
        cls = getattr(transformers, _name(vision.get(vision_type) or modeling_auto.MODEL_MAPPING_NAMES[vision_type]))
        return cls, vision_config, [f"{model_type}: linted its vision tower ({cls.__name__} from vision_config)"]
    raise LoadError(
        f"{target}: {model_type!r} is not a vision model transformers can build from a config "
        f"(no image-classification or vision model is registered for it)"
    )


def _is_vision_config(config: Any) -> bool:
    """A config for pixels alone: it has image channels and no text or vision sub-configuration."""
    return (getattr(config, "num_channels", None) is not None and getattr(config, "text_config", None) is None
            and getattr(config, "vision_config", None) is None)


def _needs_text(cls: Any) -> bool:
    """True when the class's forward starts with token ids (CLIPModel, a VLM), not pixels."""
    import inspect

    try:
        parameters = list(inspect.signature(cls.forward).parameters)
    except (TypeError, ValueError):
        return False
    return parameters[1:2] == ["input_ids"]


def _name(entry: Any) -> str:
    """A mapping entry is a class name, or a tuple of them in some transformers versions."""
    return entry[0] if isinstance(entry, (tuple, list)) else entry


def _fit_image_size(model: Any, config: Any, preprocessing: Preprocessing, notes: list[str]) -> Preprocessing:
    """The input size the model can run at: a model with learned position embeddings runs only at the
    config's ``image_size``, whatever the image processor gives (it is then said in a note)."""
    size = getattr(config, "image_size", None)
    if isinstance(size, int):
        size = (size, size)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        return preprocessing
    channels = getattr(config, "num_channels", 3) or 3
    if preprocessing.input_size is None:
        notes.append(f"no input size from the image processor: traced at the config's image_size "
                     f"{size[0]}x{size[1]}")
        return replace(preprocessing, input_size=(channels, *size))
    if tuple(preprocessing.input_size[1:]) == tuple(size) or not _has_position_embeddings(model):
        return preprocessing
    given = "x".join(map(str, preprocessing.input_size[1:]))
    notes.append(f"the image processor gives {given} inputs but the model's position embeddings are for "
                 f"{size[0]}x{size[1]} (config image_size): traced at {size[0]}x{size[1]}")
    return replace(preprocessing, input_size=(channels, *size),
                   origin=f"{preprocessing.origin}; input_size from the config's image_size")


def _has_position_embeddings(model: Any) -> bool:
    """Learned position embeddings that the forward interpolates only when asked (ViT, CLIP, SigLIP);
    DINOv2 always interpolates and has no such switch."""
    import inspect

    try:
        switch = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        switch = False
    return switch and any("position_embedding" in name for name, _ in model.named_parameters())


# --------------------------------------------------------------------------- preprocessing


def _saved_processor(target: str, folder: str) -> dict[str, Any] | None:
    """The image processor's saved keys (with ``_file``: which file), or None when the folder has none."""
    for name in PREPROCESSOR_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LoadError(f"{target}: {name} is not valid JSON ({one_line(exc)})") from None
        if name == "processor_config.json":  # a multimodal processor nests its image processor
            data = data.get("image_processor") if isinstance(data, dict) else None
        if isinstance(data, dict):
            return {**data, "_file": name}
        if name == "preprocessor_config.json":
            raise LoadError(f"{target}: {name} is not a JSON object")
    return None


def _processor_class(transformers: Any, configs: tuple, saved: Mapping[str, Any] | None) -> Any:
    """The image processor class: the saved file's, else the one transformers registers for the type."""
    names = []
    if saved:
        for key in ("image_processor_type", "feature_extractor_type"):
            if isinstance(saved.get(key), str):
                name = saved[key].replace("FeatureExtractor", "ImageProcessor")
                names += [name, name.removesuffix("Fast"), name.removesuffix("Pil")]
    for model_type in dict.fromkeys(t for config in configs for t in _processor_types(config)):
        names += _registered_processors(model_type)
    for name in names:
        cls = getattr(transformers, name, None) if name else None
        if isinstance(cls, type):
            return cls
    return None


def _processor_types(config: Any) -> list[str]:
    """Model types whose image processor fits ``config``: its own, then its package's (clip for clip_vision_model)."""
    model_type = getattr(config, "model_type", "") or ""
    package = type(config).__module__.split(".")[-2] if type(config).__module__.count(".") >= 2 else ""
    candidates = [model_type, package, re.sub(r"_vision(_model)?$", "", model_type)]
    return list(dict.fromkeys(c for c in candidates if c))


def _registered_processors(model_type: str) -> list[str]:
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    entry = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
    if isinstance(entry, dict):  # transformers 5: {"torchvision": ..., "pil": ...}
        return [entry.get("torchvision"), entry.get("pil"), *entry.values()]
    if isinstance(entry, (tuple, list)):  # transformers 4: (slow, fast)
        return list(entry)
    return [entry] if isinstance(entry, str) else []


def preprocessing_from_processor(saved: Mapping[str, Any] | None, cls: Any, *, file_origin: str | None,
                                 channels: int = 3) -> tuple[Preprocessing, list[str]]:
    """Preprocessing on [0, 1] pixels from saved image-processor keys over ``cls``'s defaults, and notes."""
    class_origin = f"{cls.__name__} class defaults" if cls is not None else None
    saved = saved or {}
    origins: dict[str, str] = {}

    def value(key: str) -> Any:
        if key in saved and saved[key] is not None:
            origins[key] = file_origin or "the saved file"
            return saved[key]
        default = getattr(cls, key, None) if cls is not None else None
        if default is not None and class_origin:
            origins[key] = class_origin
        return default

    def origin_of(*keys: str) -> str | None:
        """Where the first of ``keys`` that has a value came from (the key that decided the field)."""
        return next((origins[k] for k in keys if k in origins), None)

    fields: dict[str, Any] = {}
    field_origin: dict[str, str | None] = {}
    notes: list[str] = []
    mean, std = _statistics(value, channels, notes)
    if mean is not None:
        fields["mean"], fields["std"] = mean, std
        normalized = value("do_normalize") is not False
        field_origin["mean"] = origin_of(*(("image_mean",) if normalized else ()), "do_normalize", "rescale_factor")
        field_origin["std"] = origin_of(*(("image_std",) if normalized else ()), "do_normalize", "rescale_factor")
    size, crop_pct, keys = _input_size(value, cls, notes)
    if size is not None:
        fields["input_size"] = (channels, *size)
        field_origin["input_size"] = origin_of(*keys)
    if crop_pct is not None:
        fields["crop_pct"] = crop_pct
        field_origin["crop_pct"] = origin_of(*keys) if "crop_pct" not in keys else origin_of("crop_pct")
    resample = value("resample")
    if value("do_resize") is not False and resample is not None:
        name = RESAMPLE.get(int(resample), str(resample)) if not isinstance(resample, str) else resample
        notes.append(f"the image processor resizes with {name} resampling (from {origin_of('resample')})")
    if not fields:
        return Preprocessing(), notes
    return Preprocessing(**fields, origin=_origin_text(field_origin)), notes


def _statistics(value, channels: int, notes: list[str]) -> tuple[tuple | None, tuple | None]:
    """(mean, std) on [0, 1] pixels of what the processor feeds the model.

    The model sees ``(p * 255 * r - offset - m) / s`` for a [0, 1] pixel ``p``, with ``r`` the rescale
    factor (1 without ``do_rescale``), ``offset`` 1 with ``rescale_offset`` (EfficientNet's [-1, 1]),
    ``m`` and ``s`` the image mean and std (0 and 1 without ``do_normalize``): mean
    ``(offset + m) / (255 r)`` and std ``s / (255 r)`` on [0, 1] pixels.
    """
    normalize = value("do_normalize")
    image_mean, image_std = value("image_mean"), value("image_std")
    if normalize is None and image_std is None:
        return None, None
    rescale = value("rescale_factor") if value("do_rescale") is not False else 1.0
    rescale = float(rescale) if rescale is not None else 1 / 255
    offset = 1.0 if value("rescale_offset") and value("do_rescale") is not False else 0.0
    if normalize is False or image_std is None:
        m, s = (0.0,), (1.0,)
        if normalize is False:
            notes.append("the image processor does not normalize (do_normalize false)")
    else:
        m = _floats(image_mean if image_mean is not None else (0.0,))
        s = _floats(image_std)
    scale = 255.0 * rescale
    mean = tuple(round((offset + v) / scale, 8) for v in m)
    std = tuple(round(v / scale, 8) for v in s)
    if abs(scale - 1.0) > 1e-6:
        notes.append(f"the image processor rescales pixels by {rescale:.6g} (pixels in [0, {scale:.4g}] "
                     f"before normalization): mean and std are stated on [0, 1] pixels")
    if len(mean) == 1 and channels > 1:
        mean = mean * channels
    if len(std) == 1 and channels > 1:
        std = std * channels
    return mean, std


def _floats(values: Any) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        return (float(values),)
    return tuple(float(v) for v in values)


def _input_size(value, cls: Any, notes: list[str]) -> tuple[tuple[int, int] | None, float | None, tuple]:
    """((H, W) the model is fed, crop_pct, keys that decided them)."""
    size = _size_dict(value("size"))
    crop = _size_dict(value("crop_size"))
    crop_pct = value("crop_pct")
    crop_hw = _height_width(crop)
    if value("do_center_crop") and crop_hw is not None:
        resized = _height_width(size) or _edge(size)
        pct = crop_pct if crop_pct is not None else (
            round(crop_hw[0] / resized[0], 4) if resized else None)
        return crop_hw, pct, ("crop_size", "do_center_crop", "size", *(("crop_pct",) if crop_pct is not None else ()))
    if size is None:
        return None, None, ()
    hw = _height_width(size)
    if hw is not None:
        return hw, None, ("size",)
    edge = _edge(size)
    if edge is None:
        return None, None, ()
    if cls is not None and cls.__name__.startswith("ConvNext") and crop_pct is not None:
        # ConvNextImageProcessor: below 384 it resizes to edge / crop_pct, then crops edge x edge
        return edge, (float(crop_pct) if edge[0] < 384 else None), ("size", "crop_pct")
    notes.append(f"the image processor resizes the {'shortest' if 'shortest_edge' in size else 'longest'} "
                 f"edge to {edge[0]} without cropping: {edge[0]}x{edge[0]} assumes square images")
    return edge, None, ("size",)


def _size_dict(size: Any) -> dict[str, int] | None:
    """``size`` / ``crop_size`` in any saved form as a dict (an int means a square)."""
    if size is None:
        return None
    if isinstance(size, (int, float)):
        return {"height": int(size), "width": int(size)}
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return {"height": int(size[0]), "width": int(size[1])}
    if isinstance(size, Mapping):
        return {k: int(v) for k, v in size.items() if isinstance(v, (int, float))}
    return None


def _height_width(size: Mapping[str, int] | None) -> tuple[int, int] | None:
    if size and "height" in size and "width" in size:
        return size["height"], size["width"]
    if size and "max_height" in size and "max_width" in size:
        return size["max_height"], size["max_width"]
    return None


def _edge(size: Mapping[str, int] | None) -> tuple[int, int] | None:
    for key in ("shortest_edge", "longest_edge"):
        if size and key in size:
            return size[key], size[key]
    return None


def _origin_text(field_origin: Mapping[str, str | None]) -> str:
    """One origin, or ``mean, std from A; input_size from B`` when fields came from different places."""
    groups: dict[str, list[str]] = {}
    for name, origin in field_origin.items():
        groups.setdefault(origin or "unknown", []).append(name)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(names)} from {origin}" for origin, names in groups.items())
