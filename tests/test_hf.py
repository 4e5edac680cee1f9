"""Hugging Face models: saved folders, the local hub cache, model types, image-processor statistics.

Every folder here is written offline by transformers itself (``config.save_pretrained`` and an image
processor's ``save_pretrained``; ``model.save_pretrained`` where weights are needed), with small
configurations: one or two layers, but the patch size, stem and width that decide the findings.
Each type is compared with the findings ``noiselint timm:<counterpart>`` gets (recorded in
``TIMM_FINDINGS`` from a run with timm 1.0.31; benchmarks/README.md lists them side by side).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

from noiselint.api import lint  # noqa: E402
from noiselint.engine import read_graph  # noqa: E402
from noiselint.graph import Op  # noqa: E402
from noiselint.loaders import kind_of, load  # noqa: E402
from noiselint.loaders.hf import preprocessing_from_processor  # noqa: E402

from .conftest import ROOT  # noqa: E402

IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: type -> (config class, config kwargs, image processor class, processor kwargs, timm counterpart)
#: Processor kwargs are what the public checkpoints of the type save (google/vit-base-patch16-224,
#: facebook/deit-base-patch16-224, microsoft/swin-tiny-patch4-window7-224, facebook/dinov2-small, ...).
TYPES = {
    "vit": ("ViTConfig", dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
            "ViTImageProcessor", dict(image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": 224, "width": 224}),
            "vit_base_patch16_224"),
    "deit": ("DeiTConfig", dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
             "DeiTImageProcessor", dict(**IMAGENET, size={"height": 256, "width": 256},
                                        crop_size={"height": 224, "width": 224}, do_center_crop=True),
             "deit_base_patch16_224"),
    "beit": ("BeitConfig", dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
             "BeitImageProcessor", dict(image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": 224, "width": 224}),
             "beit_base_patch16_224"),
    "swin": ("SwinConfig", dict(embed_dim=96, depths=[1, 1], num_heads=[2, 4], window_size=7),
             "ViTImageProcessor", dict(**IMAGENET, size={"height": 224, "width": 224}, resample=3),
             "swin_tiny_patch4_window7_224"),
    "convnext": ("ConvNextConfig", dict(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2),
                 "ConvNextImageProcessor", dict(**IMAGENET, size={"shortest_edge": 224}, crop_pct=0.875),
                 "convnext_tiny"),
    "resnet": ("ResNetConfig", dict(embedding_size=16, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
                                    layer_type="bottleneck"),
               "ConvNextImageProcessor", dict(**IMAGENET, size={"shortest_edge": 224}, crop_pct=0.875),
               "resnet50"),
    "mobilenet_v2": ("MobileNetV2Config", dict(depth_multiplier=0.35),
                     "MobileNetV2ImageProcessor", dict(size={"shortest_edge": 256},
                                                       crop_size={"height": 224, "width": 224}),
                     "mobilenetv2_100"),
    "efficientnet": ("EfficientNetConfig", dict(image_size=600, width_coefficient=0.25, depth_coefficient=0.2,
                                                             hidden_dim=320),  # round_filters(1280 * 0.25),
                     "EfficientNetImageProcessor", dict(**IMAGENET, size={"height": 600, "width": 600},
                                                        do_center_crop=False, resample=0),
                     "tf_efficientnet_b7"),
    "dinov2": ("Dinov2Config", dict(hidden_size=384, num_hidden_layers=1, num_attention_heads=6, image_size=518),
               "BitImageProcessor", dict(**IMAGENET, size={"shortest_edge": 256},
                                         crop_size={"height": 224, "width": 224}),
               "vit_small_patch14_dinov2"),
    "clip_vision_model": ("CLIPVisionConfig", dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=2,
                                                   intermediate_size=64, patch_size=32),
                          "CLIPImageProcessor", dict(),
                          "vit_base_patch32_clip_224.openai"),
    "siglip_vision_model": ("SiglipVisionConfig", dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=2,
                                                       intermediate_size=64, patch_size=16),
                            "SiglipImageProcessor", dict(),
                            "vit_base_patch16_siglip_224"),
}

#: ``noiselint timm:<counterpart> --format json``: each model's finding codes (timm 1.0.31).
TIMM_FINDINGS = {
    "vit_base_patch16_224": ["NL501"],
    "deit_base_patch16_224": ["NL401", "NL501"],
    "beit_base_patch16_224": ["NL501"],
    "swin_tiny_patch4_window7_224": ["NL102", "NL401", "NL501"],
    "convnext_tiny": ["NL101", "NL202", "NL401"],
    "resnet50": ["NL103", "NL202", "NL301", "NL302", "NL302", "NL302", "NL401"],
    "mobilenetv2_100": ["NL101", "NL103", "NL401"],
    "tf_efficientnet_b7": ["NL101", "NL103", "NL201", "NL401"],
    "vit_small_patch14_dinov2": ["NL102", "NL201", "NL401"],
    "vit_base_patch32_clip_224.openai": ["NL402"],
    "vit_base_patch16_siglip_224": ["NL501"],
}

#: Where a saved Hugging Face folder legitimately differs from timm: the preprocessing, never the layers.
#: NL202 needs timm's test_input_size, which image processors do not have; google/mobilenet_v2 ships
#: std 0.5 (timm's weights use ImageNet's); facebook/dinov2 processors crop 224 (timm's cfg says 518).
PREPROCESSING_DIFFERENCES = {
    "convnext": {"NL202"}, "resnet": {"NL202"}, "mobilenet_v2": {"NL401"}, "dinov2": {"NL201"},
}

#: Expected architecture, and the input size and std read from the saved processor file.
EXPECTED = {
    "vit": ("vit", 224, (0.5,) * 3), "deit": ("vit", 224, IMAGENET_STD), "beit": ("vit", 224, (0.5,) * 3),
    "swin": ("vit", 224, IMAGENET_STD), "convnext": ("cnn", 224, IMAGENET_STD),
    "resnet": ("cnn", 224, IMAGENET_STD), "mobilenet_v2": ("cnn", 224, (0.5,) * 3),
    "efficientnet": ("cnn", 600, IMAGENET_STD), "dinov2": ("vit", 224, IMAGENET_STD),
    "clip_vision_model": ("vit", 224, CLIP_STD), "siglip_vision_model": ("vit", 224, (0.5,) * 3),
}


def save_folder(folder: Path, model_type: str, *, weights: bool = False, processor: bool = True) -> Path:
    """A folder as save_pretrained writes it: config.json, preprocessor_config.json, weights if asked."""
    config_name, config_kwargs, processor_name, processor_kwargs, _ = TYPES[model_type]
    config = getattr(transformers, config_name)(**config_kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        from transformers import AutoModelForImageClassification

        AutoModelForImageClassification.from_config(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    if processor:
        getattr(transformers, processor_name)(**processor_kwargs).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {model_type: save_folder(root / model_type, model_type) for model_type in TYPES}


def codes(model) -> list[str]:
    return sorted(f.code for f in model.findings)


@pytest.mark.parametrize("model_type", list(TYPES))
def test_saved_folder_gets_the_findings_of_its_timm_counterpart(folders, model_type):
    folder = folders[model_type]
    assert json.loads((folder / "config.json").read_text())["model_type"] == model_type
    (model,) = lint(str(folder)).models
    assert model.ok, model.load_error
    assert model.graph.trace_level in ("fx", "hooks", "export"), model.graph.notes
    assert model.graph.coverage >= 0.9
    architecture, size, std = EXPECTED[model_type]
    assert model.graph.architecture == architecture
    assert model.graph.input_size == (3, size, size)
    assert model.preprocessing.std == pytest.approx(std)
    assert model.preprocessing.origin == f"{folder}/preprocessor_config.json"
    expected = TIMM_FINDINGS[TYPES[model_type][4]]
    differences = PREPROCESSING_DIFFERENCES.get(model_type, set())
    assert codes(model) == sorted(c for c in expected if c not in differences)
    located = [f for f in model.findings if f.location is not None]
    assert all("transformers/models/" in f.location.path for f in located), located


def test_patch_embedding_and_stem_carry_shapes(folders):
    (vit,) = load(str(folders["vit"]))
    graph = read_graph(vit)
    ((_, patch),) = graph.nodes(Op.PATCH_EMBED)
    assert patch["shape"] == (1, 768, 14, 14) and patch["attrs"]["kernel"] == (16, 16) and patch["stem"]
    assert patch["module_path"] == "vit.embeddings.patch_embeddings.projection"
    (resnet,) = load(f"hf:{folders['resnet']}")
    graph = read_graph(resnet)
    stem = [data for _, data in graph.nodes() if data["stem"] and data["op"] == Op.CONV]
    assert stem[0]["attrs"]["kernel"] == (7, 7) and stem[0]["shape"] == (1, 16, 112, 112)
    ((_, pool),) = [(n, d) for n, d in graph.nodes(Op.MAX_POOL)]
    assert pool["stem"] and pool["attrs"]["window"] == (3, 3)


def test_attention_is_detected_in_transformers_layers(folders):
    (swin,) = load(str(folders["swin"]))
    graph = read_graph(swin)
    assert any("Attention" in name for name in graph.metadata["module_types"])
    assert graph.architecture == "vit"


def test_a_folder_is_an_hf_target_with_or_without_the_prefix(folders, tmp_path):
    folder = str(folders["vit"])
    assert kind_of(folder) == kind_of(f"hf:{folder}") == kind_of("hf:vit") == "hf"
    assert kind_of(str(tmp_path)) == "python"  # no config.json
    assert codes(lint(f"hf:{folder}").models[0]) == codes(lint(folder).models[0])


def test_two_tower_checkpoint_is_linted_through_its_vision_tower(tmp_path):
    config = transformers.CLIPConfig(
        vision_config=dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           patch_size=32),
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    config.architectures = ["CLIPModel"]
    config.save_pretrained(tmp_path)
    transformers.CLIPImageProcessor().save_pretrained(tmp_path)
    (loaded,) = load(str(tmp_path))
    assert type(loaded.module).__name__ == "CLIPVisionModel"
    assert any("vision tower" in note for note in loaded.notes)
    (model,) = lint(str(tmp_path)).models
    assert codes(model) == TIMM_FINDINGS["vit_base_patch32_clip_224.openai"]
    (finding,) = model.findings
    assert finding.severity.name == "WARNING"  # CLIP std on a CLIP vision tower is a warning, as for timm


def test_model_type_uses_the_processor_class_defaults_labelled_as_such():
    (model,) = lint("hf:clip_vision_model").models
    assert model.ok, model.load_error
    assert model.graph.trace_level in ("fx", "hooks", "export")
    assert model.preprocessing.std == pytest.approx(CLIP_STD)
    assert model.preprocessing.origin == "CLIPImageProcessor class defaults"
    assert codes(model) == ["NL402"]
    assert any("default configuration" in note for note in model.graph.notes)


def test_dinov2_saved_statistics_win_over_the_processor_class_defaults(folders, tmp_path):
    (saved,) = load(str(folders["dinov2"]))
    assert saved.preprocessing.std == pytest.approx(IMAGENET_STD)
    (defaults,) = load("hf:dinov2")
    assert defaults.preprocessing.std == pytest.approx(CLIP_STD)  # BitImageProcessor's class defaults
    assert defaults.preprocessing.origin == "BitImageProcessor class defaults"
    # A saved file without statistics falls back to the class defaults, and says which fields did.
    folder = save_folder(tmp_path / "dinov2", "dinov2")
    data = json.loads((folder / "preprocessor_config.json").read_text())
    del data["image_mean"], data["image_std"]
    (folder / "preprocessor_config.json").write_text(json.dumps(data))
    (partial,) = load(str(folder))
    assert partial.preprocessing.std == pytest.approx(CLIP_STD)
    assert partial.preprocessing.origin == (
        f"mean, std from BitImageProcessor class defaults; input_size, crop_pct from {folder}/preprocessor_config.json")


def test_folder_without_processor_file_uses_class_defaults_and_says_so(tmp_path):
    folder = save_folder(tmp_path / "vit", "vit", processor=False)
    (loaded,) = load(str(folder))
    assert loaded.preprocessing.origin == "ViTImageProcessor class defaults"
    assert any("no preprocessor_config.json" in note for note in loaded.notes)


class _NoDefaults:
    """A processor class with no defaults: every value comes from the saved keys."""


@pytest.mark.parametrize("saved, size, crop_pct", [
    ({"size": 256}, (256, 256), None),
    ({"size": {"height": 240, "width": 320}}, (240, 320), None),
    ({"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True},
     (224, 224), 0.875),
    ({"size": {"shortest_edge": 256}, "crop_size": 224, "do_center_crop": True}, (224, 224), 0.875),
    ({"size": {"shortest_edge": 256}, "crop_size": 224, "do_center_crop": False}, (256, 256), None),
    ({"size": {"longest_edge": 512}}, (512, 512), None),
    ({"size": [384, 384]}, (384, 384), None),
])
def test_every_size_form(saved, size, crop_pct):
    pre, notes = preprocessing_from_processor(saved, _NoDefaults, file_origin="p.json")
    assert pre.input_size == (3, *size)
    assert pre.crop_pct == crop_pct
    assert pre.origin == "p.json"
    if "edge" in json.dumps(saved) and not saved.get("do_center_crop"):
        assert any("assumes square images" in note for note in notes)


def test_convnext_processor_crop_pct():
    pre, _ = preprocessing_from_processor({"size": {"shortest_edge": 224}}, transformers.ConvNextImageProcessor,
                                          file_origin="p.json")
    assert pre.input_size == (3, 224, 224) and pre.crop_pct == 0.875
    assert pre.origin == ("mean, std, crop_pct from ConvNextImageProcessor class defaults; "
                          "input_size from p.json")
    pre, _ = preprocessing_from_processor({"size": {"shortest_edge": 384}}, transformers.ConvNextImageProcessor,
                                          file_origin="p.json")
    assert pre.input_size == (3, 384, 384) and pre.crop_pct is None  # warped, not cropped, from 384 up


@pytest.mark.parametrize("saved, mean, std", [
    (dict(image_mean=[0.5] * 3, image_std=[0.5] * 3), (0.5,) * 3, (0.5,) * 3),
    (dict(image_mean=[0.5] * 3, image_std=[0.5] * 3, do_normalize=False), (0.0,) * 3, (1.0,) * 3),
    # EfficientNet's [-1, 1]: x / 127.5 - 1 is mean 0.5, std 0.5 on [0, 1] pixels
    (dict(do_normalize=False, rescale_factor=1 / 127.5, rescale_offset=True), (0.5,) * 3, (0.5,) * 3),
    # no rescale: the processor normalizes [0, 255] pixels with these statistics
    (dict(image_mean=[127.5] * 3, image_std=[127.5] * 3, do_rescale=False), (0.5,) * 3, (0.5,) * 3),
    (dict(image_mean=[0.5], image_std=[0.25]), (0.5,) * 3, (0.25,) * 3),
])
def test_normalization_rescale_and_offset(saved, mean, std):
    pre, _ = preprocessing_from_processor({"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                                           **saved}, _NoDefaults, file_origin="p.json")
    assert pre.mean == pytest.approx(mean) and pre.std == pytest.approx(std)


def test_resample_is_reported(folders):
    (loaded,) = load(str(folders["efficientnet"]))
    assert any("nearest resampling" in note for note in loaded.notes)


# --------------------------------------------------------------------------- CLI, cache and errors


def run(*args: str, env: dict[str, str] | None = None, check_imports: bool = False) -> subprocess.CompletedProcess:
    """``noiselint ARGS`` in a fresh interpreter (the last stderr line lists heavy imports when asked)."""
    code = "import sys; from noiselint.cli import main; sys.argv = ['noiselint', *sys.argv[1:]]\n"
    if check_imports:
        code += ("import atexit; atexit.register(lambda: print('IMPORTED', sorted(m for m in ('transformers', "
                 "'timm', 'torch') if m in sys.modules), file=sys.stderr))\n")
    code += "main()"
    return subprocess.run([sys.executable, "-c", code, *args, "--isolated", "--no-cache"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600)


def test_offline_miss_is_one_line_with_exit_2(tmp_path):
    result = run("hf:some-org/some-model", env={"HF_HUB_CACHE": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "not in the local Hugging Face cache" in error[0]
    assert "hf download some-org/some-model" in error[0]
    assert "Traceback" not in result.stderr


def test_model_from_the_local_hub_cache(tmp_path):
    """The hub cache's own layout: models--ORG--NAME/{refs/main, snapshots/COMMIT/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--acme--tiny-deit"
    save_folder(repo / "snapshots" / commit, "deit")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    result = run("hf:acme/tiny-deit", "--format", "json", env={"HF_HUB_CACHE": str(tmp_path)})
    (model,) = json.loads(result.stdout)["models"]
    assert model["status"] == "ok", model
    assert sorted(f["code"] for f in model["findings"]) == ["NL401", "NL501"]
    assert model["preprocessing"]["origin"].endswith("acme/tiny-deit/preprocessor_config.json")


@pytest.mark.parametrize("target, message", [
    ("hf:no_such_type", "has no model type 'no_such_type'"),
    ("hf:bert", "not a vision model"),
    ("hf:./missing/folder", "no such folder"),
])
def test_bad_targets_are_one_line_errors(target, message):
    (model,) = lint(target).models
    assert not model.ok and message in model.load_error and "\n" not in model.load_error


def test_missing_transformers_gives_the_install_hint():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "from noiselint.api import lint\n"
            "print(lint('hf:vit').models[0].load_error)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "pip install 'noiselint[hf]'" in result.stdout, result.stderr


def test_timm_and_python_file_targets_never_import_transformers():
    result = run("timm:resnet18", "fixtures/models/resnet_maxpool.py", "--select", "NL1", "--in-process",
                 check_imports=True)  # in this process, where the imports are seen
    imported = result.stderr.strip().splitlines()[-1]
    assert imported.startswith("IMPORTED") and "'timm'" in imported and "transformers" not in imported, imported


def test_cached_result_follows_the_saved_processor_file(folders, tmp_path):
    folder = save_folder(tmp_path / "vit", "vit")
    cache = tmp_path / "cache"

    def std() -> list[float]:
        result = subprocess.run([sys.executable, "-m", "noiselint", str(folder), "--format", "json", "--isolated",
                                 "--cache-dir", str(cache)], capture_output=True, text=True, cwd=ROOT,
                                env={k: v for k, v in os.environ.items() if k != "NOISELINT_NO_CACHE"}, timeout=300)
        return json.loads(result.stdout)["models"][0]["preprocessing"]["std"]

    assert std() == [0.5, 0.5, 0.5]
    data = json.loads((folder / "preprocessor_config.json").read_text())
    data["image_std"] = [0.25, 0.25, 0.25]
    (folder / "preprocessor_config.json").write_text(json.dumps(data))
    assert std() == [0.25, 0.25, 0.25]


# --------------------------------------------------------------------------- Python files and verify


def test_python_file_with_a_pretrained_model_built_from_a_config(tmp_path):
    path = tmp_path / "hf_model.py"
    path.write_text(
        "from transformers import ViTConfig, ViTForImageClassification\n"
        "MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)\n"
        "model = ViTForImageClassification(ViTConfig(hidden_size=768, num_hidden_layers=1,\n"
        "                                            num_attention_heads=2, intermediate_size=64))\n")
    (model,) = lint(str(path)).models
    assert model.ok, model.load_error
    assert model.graph.trace_level in ("fx", "hooks", "export") and model.graph.architecture == "vit"
    assert codes(model) == TIMM_FINDINGS["vit_base_patch16_224"]


def test_verify_runs_a_saved_folder_with_its_safetensors_weights(tmp_path):
    folder = save_folder(tmp_path / "vit", "vit", weights=True)
    assert (folder / "model.safetensors").is_file()
    (loaded,) = load(str(folder), device="cpu")
    assert loaded.weights == f"{folder}/model.safetensors"
    assert next(loaded.module.parameters()).device.type == "cpu"
    result = run(str(folder), "--verify", "--images", "4", "--draws", "1", "--sigmas", "0.1", "--device", "cpu",
                 "--format", "json")
    (model,) = json.loads(result.stdout)["models"]
    verification = model["verification"]
    assert verification["weights"] == f"{folder}/model.safetensors", verification
    assert verification["forwards"] > 0 and verification["curve"]
    assert model["preprocessing"]["std"] == [0.5, 0.5, 0.5]  # what verify normalizes with: the processor's


def test_two_tower_checkpoint_weights_load_into_the_vision_tower(tmp_path):
    import torch

    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = transformers.CLIPConfig(vision_config=dict(tiny, patch_size=32), text_config=tiny)
    transformers.CLIPModel(config).save_pretrained(tmp_path)
    (loaded,) = load(str(tmp_path), device="cpu")
    assert type(loaded.module).__name__ == "CLIPVisionModel" and loaded.weights.endswith("model.safetensors")
    saved = dict(transformers.CLIPModel.from_pretrained(tmp_path).named_parameters())
    tower = dict(loaded.module.named_parameters())
    assert tower and all(torch.equal(value, saved[f"vision_model.{name}"]) for name, value in tower.items())


def test_timm_checkpoint_folder_reads_timm_pretrained_cfg(tmp_path):
    """A timm hub checkpoint's config.json (no model_type: transformers reads it through TimmWrapper)."""
    cfg = {"tag": "a1_in1k", "input_size": [3, 224, 224], "test_input_size": [3, 288, 288], "crop_pct": 0.95,
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 1000}
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 1000,
                                                      "pretrained_cfg": cfg}))
    (model,) = lint(str(tmp_path)).models
    assert model.ok and model.graph.trace_level in ("fx", "hooks", "export")
    assert model.preprocessing.origin == f"{tmp_path}/config.json pretrained_cfg"
    assert model.preprocessing.test_input_size == (3, 288, 288)
    (timm_model,) = lint("timm:resnet18.a1_in1k").models
    assert codes(model) == codes(timm_model)
