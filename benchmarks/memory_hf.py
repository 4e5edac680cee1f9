"""Peak memory of linting a ~1 B-parameter Hugging Face vision model from a saved folder.

Writes DINOv2-giant's configuration (hidden 1536, 40 layers, 24 heads, SwiGLU MLP, 14x14 patches:
the public facebook/dinov2-giant config.json values) and a BitImageProcessor with ImageNet statistics
to a temporary folder with ``save_pretrained``, no weights, then runs ``noiselint FOLDER`` in a fresh
process and prints its peak resident memory (the whole process: Python, torch, transformers and the
traced graph) against the 1.5 GB target and against the size of the float32 weights.

    python benchmarks/memory_hf.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time

TARGET_GB = 1.5
GIANT = dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4, use_swiglu_ffn=True,
             patch_size=14, image_size=518, layerscale_value=1.0)


def main() -> int:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    with tempfile.TemporaryDirectory() as folder:
        config = Dinov2Config(**GIANT, architectures=["Dinov2Model"])
        config.save_pretrained(folder)
        BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                          image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
        with torch.device("meta"):
            parameters = sum(p.numel() for p in Dinov2Model(config).parameters())
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "noiselint", folder, "--format", "json", "--no-cache",
                                 "--isolated", "--in-process"],  # one process: ru_maxrss sees all of it
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"model: DINOv2-giant config ({parameters / 1e9:.2f} B parameters, {parameters * 4 / 1e9:.1f} GB as float32)")
    print(f"exit code: {result.returncode} (1 = findings reported)")
    print(f"wall time: {elapsed:.1f} s")
    print(f"peak memory: {peak_gb:.2f} GB (target < {TARGET_GB} GB): {'OK' if peak_gb < TARGET_GB else 'OVER'}")
    try:
        (model,) = json.loads(result.stdout)["models"]
    except (ValueError, KeyError):
        print(result.stderr.strip()[-500:])
        return 1
    graph = model["graph"] or {}
    print(f"graph: {graph.get('trace_level')} level, coverage {graph.get('coverage')}, "
          f"{graph.get('architecture')}; findings {sorted(f['code'] for f in model['findings'])}")
    return 0 if peak_gb < TARGET_GB and result.returncode in (0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
