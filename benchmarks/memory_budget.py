"""Peak memory of linting inputs whose size, not the model's, drives memory (issue 15).

Builds each input in a temporary folder, runs ``noiselint`` on it in a fresh process and prints the
peak resident memory (``ru_maxrss`` of the children, so a worker process counts) with the exit code
and the last line of the report:

- a model whose forward branches on tensor values (the hooks level's CPU forward) at
  ``--input-size`` 3x3000x3000 and 3x8000x8000;
- ONNX files whose stem conv weight is 300 MB and 2 GB of (sparse) external data, read by NL601;
- an ONNX file with a 1.9 GB stem conv weight inside it (protobuf parses the whole file);
- a 0.8 MB deflate-bomb checkpoint (a zip record inflating to 800 MiB) given to ``--verify --weights``.

``--noiselint DIR`` runs another checkout (e.g. the tree before the budget) for a before/after.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

BRANCHY = '''
import torch.nn as nn


class Branchy(nn.Module):
    """A small CNN whose forward branches on a tensor value: only the hooks level's CPU run traces it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        if x.mean() > 100:  # depends on values: fx, export and the meta forward all fail here
            x = x * 0
        return self.fc(self.pool(self.body(x)).flatten(1))
'''

SMALL = '''
import torch.nn as nn

INPUT_SIZE = (3, 32, 32)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
'''


def write_branchy(folder: Path) -> Path:
    path = folder / "branchy.py"
    path.write_text(BRANCHY)
    return path


def write_sparse_onnx(folder: Path, megabytes: int) -> Path:
    """A Conv stem whose weight (N, 3, 7, 7) float32 is ``megabytes`` of external data in a sparse file."""
    from onnx import TensorProto

    channels = megabytes * 10**6 // (4 * 3 * 7 * 7)
    data = folder / f"stem{megabytes}.bin"
    with open(data, "wb") as stream:
        stream.truncate(channels * 3 * 7 * 7 * 4)  # holes: no disk used, zeros when read
    initializer = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[channels, 3, 7, 7],
                              data_location=TensorProto.EXTERNAL)
    for key, value in (("location", data.name), ("offset", "0"), ("length", str(channels * 147 * 4))):
        initializer.external_data.add(key=key, value=value)
    return _save_stem(folder / f"stem{megabytes}.onnx", initializer, channels)


def _save_stem(path: Path, weight, channels: int) -> Path:
    """An ONNX file of a 7x7 stride-2 conv with ``weight`` (N, 3, 7, 7), then global average pooling."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]),
         helper.make_node("GlobalAveragePool", ["y"], ["z"])],
        path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, channels, 1, 1])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def write_inside_onnx(folder: Path, megabytes: int) -> Path:
    """A Conv stem whose weight (N, 3, 7, 7) float32 is ``megabytes`` of zeros inside the ONNX file."""
    from onnx import TensorProto

    channels = megabytes * 10**6 // (4 * 3 * 7 * 7)
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[channels, 3, 7, 7],
                         raw_data=bytes(channels * 147 * 4))
    return _save_stem(folder / f"inside{megabytes}.onnx", weight, channels)


def write_bomb(path: Path, mebibytes: int, key: str = "weight") -> Path:
    """A torch.save zip whose one tensor record is ``mebibytes`` MiB of zeros, deflated (~1000x)."""
    import torch

    marker, numel = 1234567, mebibytes * 2**20 // 4
    buffer = io.BytesIO()
    torch.save({key: torch.zeros(marker)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(path, "w") as out:
        record = ""
        for info in source.infolist():
            if "/data/" in info.filename and not info.filename.endswith("serialization_id"):
                record = info.filename
                continue
            data = source.read(info)
            if info.filename.endswith("data.pkl"):  # the storage size and the tensor shape
                data = data.replace(b"J" + struct.pack("<i", marker), b"J" + struct.pack("<i", numel))
            out.writestr(info, data)
        info = zipfile.ZipInfo(record)
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w", force_zip64=True) as stream:
            chunk = bytes(2**20)
            for _ in range(mebibytes):
                stream.write(chunk)
    return path


def measure(args: list[str], noiselint: str | None, limit_gib: float) -> tuple[float, int, float, str]:
    """(peak GiB, exit code, seconds, the first error or note line, else the last line) of one
    ``noiselint`` run in a fresh process."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode); "
            "lines = (r.stdout + r.stderr).strip().splitlines() or ['']; "
            "print(next((x for x in lines if 'error' in x or 'budget' in x), lines[-1]))")
    env = dict(os.environ, PYTHONPATH=noiselint or "")
    start = time.perf_counter()
    def cap() -> None:  # a safety net: a run without a budget must not take the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (int(limit_gib * 2**30),) * 2)

    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "noiselint", *args, "--no-cache",
                          "--isolated", "--format", "concise"], capture_output=True, text=True, env=env,
                         preexec_fn=cap).stdout
    first, last = (out.splitlines() + ["", ""])[:2]
    peak, returncode = first.split()
    return int(peak) / 2**20, int(returncode), time.perf_counter() - start, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noiselint", help="the checkout to run (put on PYTHONPATH) [default: the installed one]")
    parser.add_argument("--limit", type=float, default=12.0,
                        help="address-space cap per run in GiB (RLIMIT_AS), so a run that is not bounded fails "
                             "rather than exhausting the machine [default: 12]")
    args = parser.parse_args()
    print(f"noiselint from {args.noiselint or 'the installed package'}; address space capped at {args.limit:g} GiB")
    with tempfile.TemporaryDirectory(prefix="noiselint-memory-") as tmp:
        folder = Path(tmp)
        branchy = write_branchy(folder)
        (folder / "small.py").write_text(SMALL)
        bomb = write_bomb(folder / "bomb.pth", 800)
        cases = [
            ("hooks CPU forward, 3x3000x3000", [str(branchy), "--input-size", "3x3000x3000"]),
            ("hooks CPU forward, 3x8000x8000", [str(branchy), "--input-size", "3x8000x8000"]),
            ("ONNX, 300 MB external stem weight", [str(write_sparse_onnx(folder, 300))]),
            ("ONNX, 2 GB external stem weight", [str(write_sparse_onnx(folder, 2000))]),
            ("ONNX, 1.9 GB stem weight inside the file", [str(write_inside_onnx(folder, 1900))]),
            (f"deflate bomb --weights ({os.path.getsize(bomb) / 1e6:.1f} MB -> 800 MiB)",
             [str(folder / "small.py"), "--verify", "--weights", str(bomb), "--images", "2", "--draws", "1",
              "--sigmas", "0.1", "--device", "cpu"]),
        ]
        print(f"{'input':<48} {'peak GiB':>8} {'exit':>4} {'s':>6}  last line")
        for label, case in cases:
            peak, returncode, seconds, last = measure(case, args.noiselint, args.limit)
            print(f"{label:<48} {peak:8.2f} {returncode:4d} {seconds:6.1f}  {last[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
