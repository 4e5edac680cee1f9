"""Run a model on batches fast: torch (CUDA or CPU) or onnxruntime, behind one call.

Torch on CUDA: ``inference_mode``, channels_last and bf16 autocast where the model allows them (its
forward must run channels_last, and its clean top-1 on the first batch must match fp32 under bf16),
and an automatic batch size that halves on out-of-memory and keeps the size that worked. On the
CPU: fp32, contiguous, a batch sized from the input. Callers hand over whole stacks of inputs
(every sigma of a chunk of images at once) so the device stays busy.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from noiselint.errors import one_line
from noiselint.graph import ModelGraph, Op, Preprocessing
from noiselint.verify.options import VerifyError, require

#: Agreement with fp32 on the first batch that bf16 must reach to be used.
BF16_MIN_AGREEMENT = 0.99


def pick_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when available, else the CPU."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def default_batch_size(device: torch.device, input_size: tuple[int, ...]) -> int:
    """A first batch size from the input size: about 1 GiB of fp32 inputs on CUDA, 8 MiB on the CPU
    (on a 2-core CPU, EfficientNet-Lite0 ran fastest at batch 8 and the MNIST CNN at 1024)."""
    values = math.prod(input_size)
    budget, cap = (2**28, 4096) if device.type == "cuda" else (2**21, 1024)
    return max(1, min(cap, 2 ** int(math.log2(max(1, budget // values)))))


def logits_of(output: Any) -> torch.Tensor:
    """The class scores of a model output: the tensor, the first of a tuple, or ``logits`` of a dict."""
    if isinstance(output, dict):
        output = output.get("logits", next(iter(output.values())))
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise VerifyError(f"the model returned a {type(output).__name__}, not a tensor of class scores")
    return output.float().flatten(1)


class TorchExecutor:
    """Normalize and run a torch module on ``device``; ``run`` splits into batches, backing off on OOM."""

    def __init__(
        self,
        module,
        device: torch.device,
        preprocessing: Preprocessing,
        channels: int,
        batch_size: int | None,
    ) -> None:
        self.device = device
        self.module = module.to(device).eval()
        self.cuda = device.type == "cuda"
        self.channels_last = False
        self.scale, self.shift = _stats(preprocessing, channels, device)
        self.auto_batch = batch_size is None
        self.batch_size = batch_size or default_batch_size(
            device, preprocessing.input_size or (channels, 224, 224)
        )
        self.precision = "fp32"
        self.notes: list[str] = []

    @property
    def label(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.cuda else "CPU"
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device.type} ({name}), {self.precision}{layout}, torch"

    def normalize(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(x - mean) / std in one pass, as x * scale + shift."""
        return torch.addcmul(self.shift, x, self.scale, out=out)

    def calibrate(self, sample: torch.Tensor) -> None:
        """On CUDA, keep channels_last if the forward runs with it, bf16 if the top-1 agrees with fp32."""
        if not self.cuda:
            return
        reference = self.run(sample)
        self.try_channels_last(sample)
        if torch.cuda.is_bf16_supported():
            self.try_bf16(sample, reference)

    def try_channels_last(self, sample: torch.Tensor) -> None:
        """Switch to channels_last, and back when the forward fails with it (``.view`` on its strides)."""
        self.module = self.module.to(memory_format=torch.channels_last)
        self.channels_last = True
        try:
            self.run(sample)
        except RuntimeError as exc:
            self.module = self.module.to(memory_format=torch.contiguous_format)
            self.channels_last = False
            self.notes.append(f"channels_last failed ({one_line(exc)}): ran contiguous")

    def try_bf16(self, sample: torch.Tensor, reference: torch.Tensor) -> None:
        """Switch to bf16 autocast unless it fails or changes more than 1 % of the clean top-1."""
        self.precision = "bf16"
        try:
            trial = self.run(sample)
        except RuntimeError as exc:  # an op without a bf16 kernel
            self.precision = "fp32"
            self.notes.append(f"bf16 autocast failed ({one_line(exc)}): ran in fp32")
            return
        agreement = (trial.argmax(1) == reference.argmax(1)).float().mean().item()
        if not torch.isfinite(trial).all() or agreement < BF16_MIN_AGREEMENT:
            self.precision = "fp32"
            self.notes.append(f"bf16 changed {1 - agreement:.1%} of clean top-1 predictions: ran in fp32")

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        """float32 logits (N, K) for normalized inputs (N, C, H, W), in batches of ``batch_size``."""
        outputs, start = [], 0
        while start < len(inputs):
            batch = inputs[start : start + self.batch_size]
            try:
                outputs.append(self._forward(batch))
            except torch.cuda.OutOfMemoryError:
                if not self.auto_batch or self.batch_size == 1:
                    raise VerifyError(f"out of GPU memory at batch size {self.batch_size}") from None
                torch.cuda.empty_cache()
                self.batch_size //= 2
                continue
            start += len(batch)
        return torch.cat(outputs)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            if self.cuda:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                    return logits_of(self.module(batch))
            return logits_of(self.module(batch))


class OnnxExecutor:
    """Run an ONNX file with onnxruntime (CUDA provider when present and asked for)."""

    def __init__(
        self,
        path: str,
        device: torch.device,
        graph: ModelGraph,
        preprocessing: Preprocessing,
        channels: int,
        batch_size: int | None,
    ) -> None:
        require("onnxruntime", "--verify on an ONNX model")
        import onnxruntime as ort

        self.device = torch.device("cpu")  # inputs go to onnxruntime as numpy arrays
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(path, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise VerifyError(f"{path}: onnxruntime cannot run it ({one_line(exc)})") from None
        self.provider = self.session.get_providers()[0]
        self.notes: list[str] = []
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.float16 = "float16" in first.type
        self.fixed_batch = first.shape[0] if first.shape and isinstance(first.shape[0], int) else None
        self.batch_size = (
            self.fixed_batch or batch_size or default_batch_size(self.device, (channels, 224, 224))
        )
        self.nhwc = graph.metadata.get("input_layout") == "NHWC"
        self.folded = any(data["op"] == Op.NORMALIZE for _, data in graph.nodes())
        scale = float(graph.metadata.get("input_pixel_scale", 1.0))
        if self.folded:  # the graph normalizes its own input: feed pixels on its scale
            self.scale = torch.full((1, channels, 1, 1), scale)
            self.shift = torch.zeros(1, channels, 1, 1)
            self.notes.append("the ONNX graph normalizes its input itself: fed pixels, not normalized inputs")
        else:
            self.scale, self.shift = _stats(preprocessing, channels, self.device)

    @property
    def label(self) -> str:
        return f"onnxruntime ({self.provider}), {'fp16' if self.float16 else 'fp32'}"

    def normalize(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(x - mean) / std in one pass, as x * scale + shift."""
        return torch.addcmul(self.shift, x, self.scale, out=out)

    def calibrate(self, sample: torch.Tensor) -> None:
        """The ONNX file fixes its own layout and precision."""

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        import numpy as np

        outputs = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size]
            size = len(batch)
            if self.fixed_batch and size < self.fixed_batch:  # pad to the batch size the file fixes
                batch = torch.cat([batch, batch[-1:].expand(self.batch_size - size, -1, -1, -1)])
            array = (batch.permute(0, 2, 3, 1) if self.nhwc else batch).contiguous().cpu().numpy()
            array = array.astype(np.float16 if self.float16 else np.float32)
            result = self.session.run(None, {self.input_name: array})[0]
            outputs.append(torch.from_numpy(np.asarray(result, dtype=np.float32))[:size])
        return torch.cat(outputs).flatten(1)


def _stats(
    preprocessing: Preprocessing, channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) = (1/std, -mean/std) as (1, C, 1, 1) tensors; unknown stats leave pixels as they are."""
    mean = preprocessing.mean or (0.0,) * channels
    std = preprocessing.std or (1.0,) * channels
    if len(mean) != channels or len(std) != channels:
        mean, std = (mean * channels)[:channels], (std * channels)[:channels]
    mean = torch.tensor(mean, device=device).view(1, channels, 1, 1)
    std = torch.tensor(std, device=device).view(1, channels, 1, 1)
    return 1.0 / std, -mean / std
