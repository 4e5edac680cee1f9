"""Fuzz ``load_onnx`` with corrupted real models: every case must load or raise ``LoadError``.

    python benchmarks/fuzz_onnx.py [--cases 1000] [--seed 0]

Seeds are the small fixture models (one saved with external data) and the ``light_*.onnx``
architectures shipped with the onnx package. Each case is either a byte mutation (bit flips,
byte replacement, truncation, chunk duplication) or a structured protobuf edit (bad attribute
values, wrong dims, dangling inputs, negative kernels, broken initializers, ...). Cases run in a
worker subprocess, so a hard crash inside onnx (a segfault) is counted, its input kept, and the
worker restarted. Exits 1 when any case ended in a traceback, a crash or a hang.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
LIGHT_DIR = Path(onnx.__file__).parent / "backend/test/data/light"
OP_TYPES = ["Conv", "MaxPool", "Relu", "Gemm", "Reshape", "Resize", "ReduceMean", "Loop", "NotAnOp", ""]
BAD_INTS = [-7, -1, 0, 2**31, 2**62]


def _fixtures():
    spec = importlib.util.spec_from_file_location("onnx_models", ROOT / "fixtures" / "onnx_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- structured mutations: each edits ``model`` in place and returns a description -----------------


def _pick_node(model, rng, with_attributes=False):
    nodes = [n for n in model.graph.node if n.attribute or not with_attributes]
    return rng.choice(nodes) if nodes else None


def bad_attribute(model, rng) -> str:
    node = _pick_node(model, rng, with_attributes=True)
    if node is None:
        return "bad_attribute (no attributes)"
    attr = rng.choice(node.attribute)
    choice = rng.randrange(4)
    if choice == 0 and attr.ints:
        attr.ints[rng.randrange(len(attr.ints))] = rng.choice(BAD_INTS)
    elif choice == 1:
        attr.ClearField("ints")
        attr.ints.extend(rng.choice(BAD_INTS) for _ in range(rng.randint(0, 5)))
    elif choice == 2:
        attr.type = rng.choice([0, 1, 2, 3, 4, 8])
    else:
        attr.s = b"\xff\xfeSAME_WHATEVER"
        attr.type = onnx.AttributeProto.STRING
    return f"bad_attribute {node.op_type}.{attr.name} ({choice})"


def negative_kernel(model, rng) -> str:
    windows = [n for n in model.graph.node if n.op_type in ("Conv", "MaxPool", "AveragePool")]
    if not windows:
        return "negative_kernel (none)"
    node = rng.choice(windows)
    name = rng.choice(["kernel_shape", "strides", "pads", "dilations", "group"])
    for attr in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(attr)
    if name == "group":
        node.attribute.append(onnx.helper.make_attribute(name, rng.choice(BAD_INTS)))
    else:
        node.attribute.append(onnx.helper.make_attribute(name, [rng.choice(BAD_INTS) for _ in range(2)]))
    return f"negative_kernel {node.op_type}.{name}"


def wrong_dims(model, rng) -> str:
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    value = rng.choice(values) if values else None
    dims = value.type.tensor_type.shape.dim if value else ()
    if not dims:
        return "wrong_dims (no dims)"
    dim = dims[rng.randrange(len(dims))]
    if rng.random() < 0.2:
        dim.dim_param = rng.choice(["", "N", "??"])
    else:
        dim.dim_value = rng.choice(BAD_INTS)
    return f"wrong_dims {value.name}"


def dangling_input(model, rng) -> str:
    node = _pick_node(model, rng)
    if node is None or not node.input:
        return "dangling_input (none)"
    node.input[rng.randrange(len(node.input))] = rng.choice(["missing_tensor", "", node.output[0]])
    return f"dangling_input {node.op_type}"


def swap_op_type(model, rng) -> str:
    node = _pick_node(model, rng)
    if node is None:
        return "swap_op_type (no nodes)"
    old, node.op_type = node.op_type, rng.choice(OP_TYPES)
    return f"swap_op_type {old}->{node.op_type}"


def cycle(model, rng) -> str:
    nodes = model.graph.node
    if len(nodes) < 2:
        return "cycle (too small)"
    early, late = sorted(rng.sample(range(len(nodes)), 2))
    if nodes[early].input and nodes[late].output:
        nodes[early].input[0] = nodes[late].output[0]
    return "cycle"


def bad_initializer(model, rng) -> str:
    inits = model.graph.initializer
    if not inits:
        return "bad_initializer (none)"
    tensor = rng.choice(inits)
    choice = rng.randrange(5)
    if choice == 0:
        tensor.dims[:] = [rng.choice(BAD_INTS[1:]) for _ in range(rng.randint(0, 4))]
    elif choice == 1:
        tensor.data_type = rng.choice([0, 8, 99])
    elif choice == 2:
        tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
    elif choice == 3:
        location = rng.choice(["../../../etc/passwd", "missing.bin", "/etc/hostname", "seed_external.onnx.data"])
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        del tensor.external_data[:]
        for key, value in (("location", location), ("offset", rng.choice([0, 7, 2**40])), ("length", 64)):
            tensor.external_data.add(key=key, value=str(value))
        tensor.data_location = onnx.TensorProto.EXTERNAL
    else:
        inits.remove(tensor)
    return f"bad_initializer {tensor.name} ({choice})"


def shape_values(model, rng) -> str:
    """Rewrite a small int64 initializer (Reshape target, ConstantOfShape shape, axes) with odd values."""
    ints = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT64 and 0 < np.prod(t.dims) < 9]
    if not ints:
        return "shape_values (none)"
    tensor = rng.choice(ints)
    values = [rng.choice([*BAD_INTS, -(2**63), 2**63 - 1]) for _ in range(int(np.prod(tensor.dims)))]
    array = np.array(values, dtype=np.int64).reshape(tuple(tensor.dims))
    tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    return f"shape_values {tensor.name}"


def bad_versions(model, rng) -> str:
    if rng.random() < 0.5:
        model.ir_version = rng.choice([0, 1, 99])
    else:
        model.opset_import[0].version = rng.choice([0, 1, 5, 999])
    return "bad_versions"


def drop_node(model, rng) -> str:
    node = _pick_node(model, rng)
    if node is None:
        return "drop_node (no nodes)"
    model.graph.node.remove(node)
    return f"drop_node {node.op_type}"


def names(model, rng) -> str:
    for node in model.graph.node:
        node.name = rng.choice(["", "dup", "input:x", node.op_type + "_0"])
    return "names"


def graph_io(model, rng) -> str:
    field = rng.choice([model.graph.input, model.graph.output])
    if field:
        field.remove(rng.choice(field))
    return "graph_io"


def symbolic_input(model, rng) -> str:
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            dim.dim_param = rng.choice(["N", "H", ""])
    return "symbolic_input"


def odd_normalization(model, rng) -> str:
    """Insert ``x <op> c`` after the first input with an odd constant (zeros, NaN, wrong shape)."""
    inputs = [v for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}]
    if not inputs:
        return "odd_normalization (no input)"
    source = inputs[0].name
    shape = rng.choice([(3,), (1, 3, 1, 1), (2, 1, 1), (), (1, 1, 1, 1, 1)])
    value = rng.choice([0.0, -1.0, float("nan"), 255.0, 1 / 255])
    constant = onnx.numpy_helper.from_array(np.full(shape, value, dtype=np.float32), "odd_constant")
    op = rng.choice(["Sub", "Div", "Mul", "Add"])
    operands = [source, "odd_constant"] if rng.random() < 0.7 else ["odd_constant", source]
    for node in model.graph.node:
        node.input[:] = ["odd_out" if name == source else name for name in node.input]
    model.graph.node.insert(0, onnx.helper.make_node(op, operands, ["odd_out"]))
    model.graph.initializer.append(constant)
    return f"odd_normalization {op} {shape} {value}"


STRUCTURED = [
    bad_attribute,
    negative_kernel,
    wrong_dims,
    dangling_input,
    swap_op_type,
    cycle,
    bad_initializer,
    bad_versions,
    drop_node,
    names,
    graph_io,
    symbolic_input,
    odd_normalization,
    shape_values,
]


# -- cases --------------------------------------------------------------------------------------


def seed_models(work: Path, fixtures) -> list[Path]:
    """The fixture models (resnet_stem also with external data) and the light_*.onnx files."""
    seeds = [fixtures.save(build(), work / f"seed_{name}.onnx") for name, build in fixtures.BUILDERS.items()]
    seeds.append(fixtures.save(fixtures.build_resnet_stem(), work / "seed_external.onnx", external=True))
    return seeds + sorted(LIGHT_DIR.glob("light_*.onnx"))


def make_case(seed: Path, rng: random.Random, fixtures) -> tuple[str, bytes]:
    """A byte-level or structured mutation of ``seed``."""
    data = seed.read_bytes()
    if rng.random() < 0.5:
        return fixtures.mutate_bytes(data, rng)
    model = onnx.load_from_string(data)
    description = ", ".join(rng.choice(STRUCTURED)(model, rng) for _ in range(rng.choice([1, 1, 1, 2, 3])))
    return description, model.SerializeToString()


def write_cases(work: Path, count: int, seed: int) -> list[dict]:
    fixtures = _fixtures()
    seeds = seed_models(work, fixtures)
    cases = []
    for i in range(count):
        rng = random.Random(f"{seed}-{i}")
        source = rng.choice(seeds)
        kind, data = make_case(source, rng, fixtures)
        # external-data cases sit beside the seed's .data file so its relative location resolves
        path = work / f"case_{i:05d}.onnx"
        path.write_bytes(data)
        cases.append({"path": str(path), "seed": source.name, "mutation": kind})
    return cases


# -- running ------------------------------------------------------------------------------------


def worker(manifest: Path, start: int) -> None:
    """Run cases from ``start`` on, one JSON line when a case starts and one with its outcome."""
    sys.path.insert(0, str(ROOT))
    from noiselint.errors import LoadError
    from noiselint.loaders.onnx_loader import load_onnx

    cases = json.loads(manifest.read_text())
    for index in range(start, len(cases)):
        print(json.dumps({"start": index}), flush=True)
        try:
            model = load_onnx(cases[index]["path"])
            for load in model.parameters.values():
                load()
            outcome = {"status": "ok"}
        except LoadError as exc:
            outcome = {"status": "load_error", "message": str(exc)}
        except Exception:  # noqa: BLE001 - an escaped exception is exactly what the fuzzer reports
            outcome = {"status": "traceback", "message": traceback.format_exc()}
        print(json.dumps({"case": index, **outcome}), flush=True)


def run_all(cases: list[dict], manifest: Path, timeout: float) -> dict[int, dict]:
    """Run every case in worker subprocesses, restarting after a crash or a hang."""
    outcomes: dict[int, dict] = {}
    start = 0
    while start < len(cases):
        command = [sys.executable, "-X", "faulthandler", __file__, "--worker", str(manifest), str(start)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            stdout, stderr, died = done.stdout, done.stderr, done.returncode != 0
            failure = f"crash (exit code {done.returncode})"
        except subprocess.TimeoutExpired as exc:
            stdout, stderr, died, failure = _text(exc.stdout), _text(exc.stderr), True, "hang"
        started = start
        for line in stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                outcomes[record.pop("case")] = record
        if not died:
            break
        outcomes[started] = {"status": failure, "message": stderr[-2000:]}
        start = started + 1
    return outcomes


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def report(cases: list[dict], outcomes: dict[int, dict], keep: Path) -> int:
    """Print the figures and the failures; keep failing inputs under ``keep``. Returns the exit code."""
    statuses = Counter(outcome["status"] for outcome in outcomes.values())
    failures = {i: o for i, o in outcomes.items() if o["status"] not in ("ok", "load_error")}
    print(f"cases run:        {len(outcomes)}")
    print(f"loaded OK:        {statuses['ok']}")
    print(f"clean LoadError:  {statuses['load_error']}")
    print(f"tracebacks:       {statuses['traceback']}")
    print(f"crashes/hangs:    {len(failures) - statuses['traceback']}")
    by_seed = Counter((cases[i]["seed"], o["status"]) for i, o in outcomes.items())
    for seed in sorted({c["seed"] for c in cases}):
        print(f"  {seed:32} ok {by_seed[seed, 'ok']:4}  LoadError {by_seed[seed, 'load_error']:4}")
    for index, outcome in sorted(failures.items()):
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(cases[index]["path"], keep / Path(cases[index]["path"]).name)
        print(f"\n[{outcome['status']}] case {index} ({cases[index]['seed']}: {cases[index]['mutation']})")
        print(outcome["message"])
    if failures:
        print(f"\nfailing inputs kept in {keep}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="number of mutated models (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker run before a hang")
    parser.add_argument("--keep", type=Path, default=Path("fuzz_onnx_failures"), help="where failing inputs go")
    parser.add_argument("--worker", nargs=2, metavar=("MANIFEST", "START"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), int(args.worker[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="fuzz-onnx-") as tmp:
        work = Path(tmp)
        cases = write_cases(work, args.cases, args.seed)
        manifest = work / "cases.json"
        manifest.write_text(json.dumps(cases))
        return report(cases, run_all(cases, manifest, args.timeout), args.keep)


if __name__ == "__main__":
    sys.exit(main())
