"""Images for a timm model are preprocessed by timm's own eval transform (chelsea as the check)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noiselint.graph import Preprocessing
from noiselint.verify.data import library_transform, load_images, to_model_input


def test_timm_model_images_match_timm_transform():
    timm = pytest.importorskip("timm")
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    torch.set_num_threads(1)
    with torch.device("meta"):
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    config = resolve_data_config(model=model)
    reference = create_transform(**config)(Image.fromarray(skdata.chelsea()))
    mean = torch.tensor(config["mean"]).view(3, 1, 1)
    std = torch.tensor(config["std"]).view(3, 1, 1)
    pixels = reference * std + mean  # timm's transform, normalization undone
    images = load_images("natural", Preprocessing(input_size=(3, 224, 224)), 20, 0, library_transform(model))
    ours = images.images[images.names.index("chelsea")]
    assert (ours - pixels).abs().max().item() < 1e-5
    own = to_model_input(skdata.chelsea(), (3, 224, 224), 0.875)
    print("own resize vs timm, max |diff| per pixel:", (own - pixels).abs().max().item())
    assert not np.allclose(own.numpy(), pixels.numpy(), atol=1e-3)


def test_torchvision_target_images_match_the_weights_transforms():
    tvm = pytest.importorskip("torchvision.models")
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    preset = tvm.ResNet18_Weights.DEFAULT.transforms()
    reference = preset(Image.fromarray(skdata.chelsea()))
    pixels = reference * torch.tensor(preset.std).view(3, 1, 1) + torch.tensor(preset.mean).view(3, 1, 1)
    transform = library_transform(None, "torchvision:resnet18")
    images = load_images("natural", Preprocessing(input_size=(3, 224, 224)), 20, 0, transform)
    ours = images.images[images.names.index("chelsea")]
    assert (ours - pixels).abs().max().item() < 1e-5  # bilinear, as the weights' preset, not noiselint's bicubic
    assert not torch.allclose(to_model_input(skdata.chelsea(), (3, 224, 224), 0.875), pixels, atol=1e-3)
    assert library_transform(None, "model.py") is None
