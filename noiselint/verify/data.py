"""Images for verify, preprocessed the model's own way and kept as [0, 1] pixels.

Sources: an image folder (class subfolders give labels, a flat folder none), or images that
installed packages ship, so verify works offline: ``natural`` (scikit-image ``skimage.data``,
scikit-learn's sample images, matplotlib's ``grace_hopper.jpg``; label-free) and ``digits``
(scikit-learn's 1,797 labelled 8x8 digits in the MNIST layout: the 8x8 digit scaled to 20/28 of the
input and centred, 0..16 scaled to [0, 1]). ``auto`` picks ``digits`` for one-channel models and
``natural`` otherwise.

Natural images and folders go through the model library's own eval transform where there is one
(timm, torchvision weights; :func:`library_transform`); otherwise they are resized so the shorter
side is ``size / crop_pct`` (bicubic, antialiased), then centre-cropped to the input size, as timm's
eval transform and ImageNet-C's Resize(256)+CenterCrop(224) do. Normalization is not applied here:
noise goes on the [0, 1] pixels.

With ``sensor`` (``--noise-at sensor``) each image is also kept at its own resolution (``ImageSet.sensor``,
digits at 8x8) with the function that takes it to the model input, so noise can be added before the
resize and crop (:meth:`ImageSet.sensor_noisy`); the library transform is then not used, since it
takes 8-bit images and noisy pixels are floats.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from noiselint.graph import DEFAULT_INPUT_SIZE, Preprocessing
from noiselint.loaders import kind_of
from noiselint.verify.noise import PIXEL_STREAM, seed_for
from noiselint.verify.options import INSTALL_HINT, VerifyError

DEFAULT_CROP_PCT = 0.875  # Resize(256) + CenterCrop(224)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
SKIMAGE_NATURAL = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "clock",
    "coins",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
)
MNIST_BOX = 20 / 28  # MNIST digits fill a 20x20 box centred in the 28x28 frame


@dataclass
class ImageSet:
    """``images``: (N, C, H, W) float32 in [0, 1] at the model's input size; ``labels``: (N,) or None.

    ``sensor``: for the sensor protocol, each image as (C, H0, W0) [0, 1] pixels at its own resolution,
    and ``to_input`` the resize and crop that made ``images`` from it."""

    images: torch.Tensor
    labels: torch.Tensor | None
    names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    sensor: list[torch.Tensor] | None = None
    to_input: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def sensor_noisy(self, indices: range, sigmas: tuple[float, ...], draw: int, seed: int) -> torch.Tensor:
        """(len(sigmas) * N, C, H, W) model-size pixels, sigma-major: each image at its own resolution
        plus sigma z, clipped to [0, 1], then resized and cropped. Image i's z comes from the same
        seeded generator the input protocol uses (its own shape), shared by every sigma."""
        generator = torch.Generator()
        out = torch.empty((len(sigmas), len(indices), *self.images.shape[1:]))
        for row, index in enumerate(indices):
            raw = self.sensor[index]
            generator.manual_seed(seed_for(seed, PIXEL_STREAM, draw, index))
            z = torch.randn(raw.shape, generator=generator)
            for i, sigma in enumerate(sigmas):
                out[i, row] = self.to_input((raw + sigma * z).clamp_(0, 1))
        return out.flatten(0, 1)

    def drop_labels(self, reason: str) -> None:
        self.labels = None
        self.notes.append(f"labels ignored: {reason}")


def library_transform(module, target: str = "") -> Callable | None:
    """The model library's own eval transform without its final Normalize (verify adds noise to [0, 1]
    pixels): timm's for a timm model (``resolve_data_config`` + ``create_transform``), the default
    weights' ``transforms()`` for a ``torchvision:NAME`` target. PIL image -> (C, H, W) tensor; None
    for other models."""
    is_torchvision = kind_of(target) == "torchvision"
    if not is_torchvision and (module is None or not hasattr(module, "pretrained_cfg")):
        return None  # neither library's model: torchvision (and torch._dynamo with it) is not imported
    try:
        from torchvision import transforms as T
    except ImportError:
        return None
    if is_torchvision:
        return _torchvision_transform(target.removeprefix("torchvision:"), T)
    try:
        from timm.data import create_transform, resolve_data_config
    except ImportError:
        return None
    transform = create_transform(**resolve_data_config(model=module))
    steps = [t for t in getattr(transform, "transforms", [transform]) if not isinstance(t, T.Normalize)]
    return T.Compose(steps)


def _torchvision_transform(name: str, T) -> Callable | None:
    """The resize, crop and float conversion of the default weights' ``ImageClassification`` transform."""
    import torchvision.models as tvm

    try:
        preset = tvm.get_model_weights(name).DEFAULT.transforms()
        return T.Compose([
            T.Resize(preset.resize_size, interpolation=preset.interpolation, antialias=preset.antialias),
            T.CenterCrop(preset.crop_size),
            T.PILToTensor(),
            T.ConvertImageDtype(torch.float),
        ])
    except Exception:  # noqa: BLE001 - models without published weights or without that preset
        return None


def load_images(
    data: str,
    preprocessing: Preprocessing,
    limit: int,
    seed: int,
    transform: Callable | None = None,
    sensor: bool = False,
) -> ImageSet:
    """The images of ``data`` (a folder or a built-in set name), at most ``limit`` (a seeded sample).

    ``transform`` (see :func:`library_transform`) replaces the own resize and crop for natural images;
    ``sensor`` keeps every image at its own resolution too (and uses no ``transform``).
    """
    global _TRANSFORM, _SENSOR
    _TRANSFORM, _SENSOR = (None if sensor else transform), ([] if sensor else None)
    try:
        images = _load(data, preprocessing, limit, seed)
        if sensor:
            images.sensor = _SENSOR
            if transform is not None:
                images.notes.append(
                    "--noise-at sensor: images resized and cropped by noiselint (bicubic, antialiased), "
                    "not the model library's transform (it takes 8-bit images)"
                )
        return images
    finally:
        _TRANSFORM, _SENSOR = None, None


def _load(data: str, preprocessing: Preprocessing, limit: int, seed: int) -> ImageSet:
    size = preprocessing.input_size or DEFAULT_INPUT_SIZE
    if size[0] not in (1, 3):
        raise VerifyError(f"verify feeds 1- or 3-channel images; the model takes {size[0]} channels")
    crop = preprocessing.crop_pct or DEFAULT_CROP_PCT
    if data == "auto":
        data = "digits" if size[0] == 1 else "natural"
    if data == "digits":
        return _digits(size, limit, seed)
    if data == "natural":
        return _natural(size, crop, limit, seed)
    return _folder(Path(data), size, crop, limit, seed)


def _sample(count: int, limit: int, seed: int) -> np.ndarray:
    """Indices of a seeded sample of ``limit`` out of ``count``, in order (all when it fits)."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


_TRANSFORM: Callable | None = None
_SENSOR: list[torch.Tensor] | None = None  # the images at their own resolution, while load_images runs


def to_model_input(image: np.ndarray, size: tuple[int, int, int], crop_pct: float) -> torch.Tensor:
    """An (H, W[, C]) uint8 or bool array -> (C, H, W) float [0, 1]: resize, centre crop, channels
    (the model library's own transform when :func:`load_images` was given one)."""
    array = np.asarray(image)
    if _TRANSFORM is not None and size[0] == 3 and array.dtype == np.uint8:
        from PIL import Image

        rgb = array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=2)
        x = _TRANSFORM(Image.fromarray(np.ascontiguousarray(rgb[..., :3])))
        if tuple(x.shape) == tuple(size):
            return x.clamp(0, 1)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    x = torch.from_numpy(np.array(array, dtype=np.float32)) / (255.0 if array.dtype == np.uint8 else 1.0)
    x = x[..., None] if x.ndim == 2 else x[..., :3]
    x = _channels(x.permute(2, 0, 1), size[0])
    if _SENSOR is not None:
        _SENSOR.append(x)
    return resize_crop(x, size, crop_pct)


def resize_crop(x: torch.Tensor, size: tuple[int, int, int], crop_pct: float) -> torch.Tensor:
    """(C, H0, W0) [0, 1] pixels -> the model input: shorter side to size / crop_pct (bicubic,
    antialiased), centre crop, clipped to [0, 1]."""
    _, height, width = size
    h, w = x.shape[-2:]
    scale = max(height / crop_pct / h, width / crop_pct / w)
    new = (max(height, round(h * scale)), max(width, round(w * scale)))
    x = F.interpolate(x[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0]
    top, left = (new[0] - height) // 2, (new[1] - width) // 2
    return x[:, top : top + height, left : left + width].clamp(0, 1)


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if channels == 1 and x.shape[0] == 3:
        return (x * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    if channels == 3 and x.shape[0] == 1:
        return x.expand(3, -1, -1)
    return x


def _natural_sources() -> list[tuple[str, object]]:
    """(name, zero-argument loader) for every natural image an installed package ships.

    scikit-learn's and matplotlib's images are read as files, which spares importing those packages.
    """
    sources: list[tuple[str, object]] = []
    try:
        import skimage.data as skdata

        sources += [(name, getattr(skdata, name)) for name in SKIMAGE_NATURAL if hasattr(skdata, name)]
    except ImportError:
        pass
    for package, folder, names in (
        ("sklearn", ("datasets", "images"), ("china.jpg", "flower.jpg")),
        ("matplotlib", ("mpl-data", "sample_data"), ("grace_hopper.jpg",)),
    ):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for name in names:
            path = Path(spec.submodule_search_locations[0], *folder, name)
            if path.is_file():
                sources.append((path.stem, lambda path=path: _read(path, 3)))
    return sources


def _read(path: Path, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB" if channels == 3 else "L"))


def _natural(size, crop: float, limit: int, seed: int) -> ImageSet:
    sources = _natural_sources()
    images, names, failed = [], [], []
    for index in _sample(len(sources), limit, seed):
        name, loader = sources[index]
        try:
            images.append(to_model_input(loader(), size, crop))
        except Exception:  # noqa: BLE001 - a loader that needs the network is skipped
            failed.append(name)
            continue
        names.append(name)
    if not images:
        raise VerifyError(
            f"no built-in natural images could be loaded: {INSTALL_HINT}, or give --data FOLDER"
        )
    notes = [f"skipped images that could not be loaded offline: {', '.join(failed)}"] if failed else []
    return ImageSet(
        torch.stack(images),
        None,
        names,
        "natural images shipped by scikit-image, scikit-learn and matplotlib",
        notes,
        to_input=partial(resize_crop, size=size, crop_pct=crop),
    )


def _digits(size, limit: int, seed: int) -> ImageSet:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise VerifyError(f"--data digits needs scikit-learn: {INSTALL_HINT}") from None
    digits = load_digits()
    index = _sample(len(digits.images), limit, seed)
    x = torch.from_numpy(digits.images[index]).float()[:, None] / 16.0
    if _SENSOR is not None:
        _SENSOR.extend(x)
    labels = torch.from_numpy(digits.target[index]).long()
    return ImageSet(
        _mnist_layout(x, size),
        labels,
        [f"digit{i}" for i in index],
        "scikit-learn digits (8x8, 0..16) in the MNIST layout: a 20x20 box centred in 28x28, "
        "scaled to the input size",
        [],
        to_input=lambda digit: _mnist_layout(digit[None], size)[0],
    )


def _mnist_layout(x: torch.Tensor, size) -> torch.Tensor:
    """(N, 1, 8, 8) digits -> (N, C, H, W): scaled to a 20/28 box (bicubic), centred, zero frame."""
    channels, height, width = size
    inner = (max(1, round(height * MNIST_BOX)), max(1, round(width * MNIST_BOX)))
    x = F.interpolate(x, size=inner, mode="bicubic", align_corners=False).clamp(0, 1)
    top, left = (height - inner[0]) // 2, (width - inner[1]) // 2
    x = F.pad(x, (left, width - inner[1] - left, top, height - inner[0] - top))
    return x.expand(-1, channels, -1, -1).contiguous()


def _folder(root: Path, size, crop: float, limit: int, seed: int) -> ImageSet:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and _images_in(p))
    notes = []
    if classes:
        files = [(path, label) for label, folder in enumerate(classes) for path in _images_in(folder)]
        mapping, note = _class_indices([c.name for c in classes])
        files = [(path, mapping[label]) for path, label in files]
        if note:
            notes.append(note)
        loose = _images_in(root)
        if loose:
            notes.append(
                f"{len(loose)} image(s) directly in {root} ignored: the class subfolders give labels"
            )
    else:
        files = [(path, None) for path in _images_in(root)]
    if not files:
        raise VerifyError(f"--data {root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    images, names = [], []
    picked = _sample(len(files), limit, seed)
    for index in picked:
        path = files[index][0]
        try:
            array = _read(path, size[0])
        except OSError as exc:
            raise VerifyError(f"--data: cannot read {path}: {exc}") from None
        images.append(to_model_input(array, size, crop))
        names.append(str(path.relative_to(root)))
    labels = torch.tensor([files[i][1] for i in picked]) if classes else None
    kind = f"{len(classes)} class folders" if classes else "a flat folder"
    return ImageSet(torch.stack(images), labels, names, f"{root} ({kind})", notes,
                    to_input=partial(resize_crop, size=size, crop_pct=crop))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_indices(names: list[str]) -> tuple[list[int], str | None]:
    """Class index of each folder: integer names as given, ImageNet synsets by index, else sorted order."""
    if all(name.isdigit() for name in names):
        return [int(name) for name in names], None
    if all(len(name) == 9 and name[0] == "n" and name[1:].isdigit() for name in names):
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            synsets = {s: i for i, s in enumerate(info.label_names())}
            if all(name in synsets for name in names):
                return [
                    synsets[name] for name in names
                ], "class folders are ImageNet synsets: ImageNet-1k indices"
        except (ImportError, OSError):
            pass
    return list(range(len(names))), (
        f"labels are the sorted class-folder order (0..{len(names) - 1}): "
        "the model's outputs must use the same order"
    )
