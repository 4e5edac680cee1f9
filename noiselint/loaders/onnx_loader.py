"""Read an ONNX file into a :class:`~noiselint.graph.ModelGraph`, without importing torch.

The file is validated with the ONNX checker, then shapes are inferred, both through path-based
APIs so models with external data or over 2 GB work. Weights are never read up front: the
``parameters`` callables load them on demand.

Conventions for ONNX graphs:

* node ids are the ONNX node name when it is unique and non-empty, else ``{op_type}_{index}``
  (``index`` = position in the ONNX node list); graph inputs and outputs are ``input:<tensor>``
  and ``output:<tensor>``; ``order`` numbers inputs, then nodes (ONNX order, which the checker
  guarantees is topological), then outputs;
* ``attrs["padding"]`` holds the begin pads only (``(top, left)`` for 2-D) and ``attrs["pads"]`` the
  full ONNX list ``(top, left, bottom, right)``; with ``auto_pad=SAME_*`` both are computed from
  the input shape, or ``None`` when it is unknown;
* ``shape`` is the first output's inferred shape; a symbolic first (batch) dim of a tensor of rank
  >= 2 reads as 1, any other unknown dim makes the shape ``None``;
* ``weights`` is true when some conv, linear or norm layer reads a non-empty initializer; such
  layers get a ``parameters`` loader (Conv: ``weight``/``bias``; BatchNormalization: ``scale``,
  ``bias``, ``mean``, ``var``; others: keyed by initializer name).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from noiselint import memory
from noiselint.errors import LoadError, one_line
from noiselint.graph import ModelGraph, Op, Preprocessing, SourceLocation, add_node
from noiselint.loaders import missing

_ACTIVATIONS = (
    "Relu Sigmoid Gelu Tanh LeakyRelu PRelu Elu Selu Celu Clip HardSwish HardSigmoid Softmax LogSoftmax "
    "Softplus Softsign Mish ThresholdedRelu"
)
_KINDS = {
    "Conv": Op.CONV,
    "ConvTranspose": Op.CONV,
    "MaxPool": Op.MAX_POOL,
    "AveragePool": Op.AVG_POOL,
    "GlobalAveragePool": Op.ADAPTIVE_AVG_POOL,
    "GlobalMaxPool": Op.ADAPTIVE_MAX_POOL,
    "Gemm": Op.LINEAR,
    "MatMul": Op.LINEAR,
    "Add": Op.ADD,
    "Sum": Op.ADD,
    "Mul": Op.MUL,
    "Concat": Op.CONCAT,
    "Resize": Op.RESIZE,
    "Upsample": Op.RESIZE,
    "Attention": Op.ATTENTION,
    **dict.fromkeys(_ACTIVATIONS.split(), Op.ACTIVATION),
    **dict.fromkeys(["Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"], Op.RESHAPE),
    **dict.fromkeys(
        ["BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LRN"],
        Op.NORM,
    ),
}
_SPATIAL_REDUCTIONS = {"ReduceMean": Op.ADAPTIVE_AVG_POOL, "ReduceMax": Op.ADAPTIVE_MAX_POOL}
_STANDARD_DOMAINS = ("", "ai.onnx")
_MS_ATTENTION = ("Attention", "MultiHeadAttention")  # com.microsoft contrib ops
_ROLES = {
    "Conv": (None, "weight", "bias"),
    "BatchNormalization": (None, "scale", "bias", "mean", "var"),
}
_WEIGHTED = (Op.CONV, Op.LINEAR, Op.NORM)
_AFFINE_OPS = ("Add", "Sub", "Mul", "Div")
_MAX_CONSTANT_SIZE = 4096
#: Peak memory over the file's size of the checker, shape inference and the load, each of which parses
#: the whole file (its bytes and the parsed message): 2.0 measured on 300 MB and 1.9 GB files, plus headroom.
_PARSE_FACTOR = 2.5


def load_onnx(path: str | os.PathLike, name: str | None = None, max_memory: int | None = None) -> ModelGraph:
    """Read the ONNX file at ``path``; every failure raises :class:`LoadError` with one line. The weight
    loaders read no initializers that would take more than ``max_memory`` bytes (default: the
    :data:`~noiselint.memory.DEFAULT_MAX_MEMORY` budget); the graph's notes say what they skipped."""
    shown = str(path)
    try:
        if not os.path.exists(path):
            raise missing(shown)
        if not os.path.isfile(path):
            raise LoadError(f"{shown}: not a file")
        size = os.path.getsize(path)
        if size == 0:
            raise LoadError(f"{shown}: empty file, not an ONNX model")
        budget = memory.DEFAULT_MAX_MEMORY if max_memory is None else max_memory
        need = memory.resident_bytes() + int(_PARSE_FACTOR * size)
        if need > budget:
            raise LoadError(
                f"{shown}: reading this {memory.shown(size)} file (its weights are inside it) needs about "
                f"{memory.shown(need)}, over the memory budget of {memory.shown(budget)} (--max-memory); "
                "raise --max-memory or save the weights as external data")
        model, notes = _read_model(os.fspath(path))
        return _Builder(model, shown, notes, budget).build(name or Path(shown).stem)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"{shown}: not a valid ONNX model ({one_line(exc)})") from exc


def _read_model(path: str):
    """Check the file, infer shapes into a temporary copy and load that (without external data)."""
    import onnx

    onnx.checker.check_model(path)
    with tempfile.TemporaryDirectory(prefix="noiselint-onnx-") as tmp:
        inferred = os.path.join(tmp, "inferred.onnx")
        try:
            onnx.shape_inference.infer_shapes_path(path, inferred, data_prop=True)
            return onnx.load(inferred, load_external_data=False), []
        except Exception as exc:  # noqa: BLE001 - any failure here only costs the shapes
            note = f"shape inference failed ({one_line(exc)}); only shapes stored in the file are used"
    return onnx.load(path, load_external_data=False), [note]


class _Builder:
    """Turns one checked, shape-inferred ``ModelProto`` into a :class:`ModelGraph`."""

    def __init__(self, model, shown: str, notes: list[str], max_memory: int) -> None:
        self.model = model
        self.max_memory = max_memory
        self.nodes = list(model.graph.node)
        self.shown = shown
        self.base_dir = os.path.dirname(os.path.abspath(shown))
        self.notes = list(notes)
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.shapes = _tensor_shapes(model.graph)
        self.constant_nodes = {n.output[0]: n for n in self.nodes if n.op_type == "Constant" and n.output}
        self.consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for tensor in dict.fromkeys(node.input):
                self.consumers.setdefault(tensor, []).append(index)
        self.inputs = [v for v in model.graph.input if v.name not in self.initializers]
        self.ids = _node_ids(self.nodes)
        self.g = nx.DiGraph()
        self.parameters: dict[str, Callable[[], dict[str, np.ndarray]]] = {}
        self.metadata: dict[str, Any] = {
            "ir_version": model.ir_version,
            "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
        }

    def build(self, name: str) -> ModelGraph:
        producers = self._add_inputs()
        for index, node in enumerate(self.nodes):
            node_id = self.ids[index]
            self._add_node(node_id, node, len(self.inputs) + index)
            for pred in dict.fromkeys(producers[t] for t in node.input if t in producers):
                self.g.add_edge(pred, node_id)
            producers.update((out, node_id) for out in node.output if out)
        self._add_outputs(producers)
        image = self._image_input()
        preprocessing = self._preprocessing(image)
        self._add_notes(image)
        shaped = sum(1 for _, shape in self.g.nodes(data="shape") if shape is not None)
        return ModelGraph(
            name=name,
            graph=self.g,
            preprocessing=preprocessing,
            trace_level="onnx",
            coverage=shaped / max(len(self.g), 1),
            traced_input_size=image[1] if image else None,
            weights=bool(self.parameters),
            notes=self.notes,
            parameters=self.parameters,
            metadata=self.metadata,
        )

    # -- graph ------------------------------------------------------------------------------

    def _add_inputs(self) -> dict[str, str]:
        producers = {}
        for order, value in enumerate(self.inputs):
            node_id = self._free_id(f"input:{value.name}")
            self._add(node_id, Op.INPUT, order, self.shapes.get(value.name), value.name, None)
            producers[value.name] = node_id
        return producers

    def _add_outputs(self, producers: dict[str, str]) -> None:
        first = len(self.inputs) + len(self.nodes)
        for offset, value in enumerate(self.model.graph.output):
            node_id = self._free_id(f"output:{value.name}")
            self._add(node_id, Op.OUTPUT, first + offset, self.shapes.get(value.name), value.name, None)
            if value.name in producers:
                self.g.add_edge(producers[value.name], node_id)

    def _free_id(self, candidate: str) -> str:
        taken = set(self.g) | set(self.ids.values())
        return _unique(candidate, taken)

    def _add(self, node_id, op, order, shape, module_path, module_type, attrs=None) -> None:
        add_node(
            self.g,
            node_id,
            op,
            order=order,
            attrs=attrs,
            shape=shape,
            module_path=module_path,
            module_type=module_type,
            source=SourceLocation(path=self.shown, line=1, column=1),
        )

    def _add_node(self, node_id: str, node, order: int) -> None:
        kind, attrs = self._kind_and_attrs(node_id, node)
        shape = self.shapes.get(node.output[0]) if node.output else None
        self._add(node_id, kind, order, shape, node.name or node_id, node.op_type, attrs)
        if kind in _WEIGHTED:
            self._add_parameters(node_id, node)

    # -- op kinds and attributes ------------------------------------------------------------

    def _kind_and_attrs(self, node_id: str, node) -> tuple[str, dict[str, Any]]:
        if node.domain not in _STANDARD_DOMAINS:
            return (Op.ATTENTION if node.op_type in _MS_ATTENTION else Op.OTHER), {"kind": node.op_type}
        raw = _raw_attributes(node)
        in_shape = self._shape_of(node, 0)
        if node.op_type in _SPATIAL_REDUCTIONS:
            return self._reduce(node, raw, in_shape)
        kind = _KINDS.get(node.op_type, Op.OTHER)
        if kind == Op.CONV:
            return kind, self._conv_attrs(node_id, node, raw, in_shape)
        if kind in (Op.MAX_POOL, Op.AVG_POOL):
            attrs = _window_attrs(node_id, raw, tuple(raw.get("kernel_shape", ())), in_shape)
            attrs["window"] = attrs["kernel"]
            return kind, attrs | _pick(raw, "ceil_mode", "count_include_pad")
        if kind in (Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL):
            spatial = len(in_shape) - 2 if in_shape and len(in_shape) > 2 else 2
            return kind, {"output_size": (1,) * spatial}
        if kind == Op.LINEAR:
            return kind, self._linear_attrs(node, raw)
        if kind == Op.NORM:
            return kind, {"kind": node.op_type} | _pick(raw, "epsilon", "axis", "num_groups", "size")
        if kind == Op.RESIZE:
            return kind, self._resize_attrs(node, raw, in_shape)
        return kind, {"kind": node.op_type} if kind in (Op.ACTIVATION, Op.OTHER) else {}

    def _conv_attrs(self, node_id: str, node, raw: dict, in_shape) -> dict[str, Any]:
        """Window attrs plus groups and channels (from the weight: (out, in/groups, k...), transposed
        (in, out/groups, k...))."""
        weight = self._shape_of(node, 1)
        kernel = tuple(raw.get("kernel_shape", ())) or (tuple(weight[2:]) if weight else ())
        groups = raw.get("group", 1)
        if groups < 1:
            raise ValueError(f"node {node_id}: group {groups} must be >= 1")
        transposed = node.op_type == "ConvTranspose"
        attrs = _window_attrs(node_id, raw, kernel, in_shape) | {"groups": groups, "transposed": transposed}
        if weight and len(weight) >= 2:
            outer, inner = weight[0], weight[1] * groups
            attrs["in_channels"], attrs["out_channels"] = (outer, inner) if transposed else (inner, outer)
        elif in_shape and len(in_shape) >= 2:
            attrs["in_channels"] = in_shape[1]
        return attrs

    def _linear_attrs(self, node, raw: dict) -> dict[str, Any]:
        weight = self._shape_of(node, 1)
        if not weight or len(weight) != 2:
            return {}
        k, n = weight[::-1] if raw.get("transB") else weight
        return {"in_features": k, "out_features": n}

    def _resize_attrs(self, node, raw: dict, in_shape) -> dict[str, Any]:
        mode = raw.get("mode", "nearest")
        out_shape = self.shapes.get(node.output[0]) if node.output else None
        if in_shape and out_shape and len(in_shape) == len(out_shape) > 2 and all(in_shape[2:]):
            scale = tuple(o / i for o, i in zip(out_shape[2:], in_shape[2:], strict=True))
            return {"mode": mode, "scale": scale}
        scales = raw.get("scales")
        position = 2 if node.op_type == "Resize" else 1
        if scales is None and len(node.input) > position:
            found = self._constant(node.input[position])
            scales = found.ravel().tolist() if found is not None else None
        return {"mode": mode, "scale": tuple(float(s) for s in scales[2:]) if scales else None}

    def _reduce(self, node, raw: dict, in_shape) -> tuple[str, dict[str, Any]]:
        """A mean (max) over all spatial axes (2, 3, ...) is a global average (max) pool."""
        axes = raw.get("axes")
        if axes is None and len(node.input) > 1:
            found = self._constant(node.input[1])
            axes = found.astype(np.int64).ravel().tolist() if found is not None else None
        rank = len(in_shape) if in_shape else 4
        if axes and rank > 2 and sorted(a % rank for a in axes) == list(range(2, rank)):
            keepdims = raw.get("keepdims", 1)
            return _SPATIAL_REDUCTIONS[node.op_type], {"output_size": (1,) * (rank - 2), "keepdims": keepdims}
        return Op.OTHER, {"kind": node.op_type}

    def _add_parameters(self, node_id: str, node) -> None:
        """Register a lazy loader for the node's initializer inputs (its real weights)."""
        roles = _ROLES.get(node.op_type, ())
        tensors = {}
        for position, tensor in enumerate(node.input):
            if position > 0 and tensor in self.initializers:
                role = roles[position] if position < len(roles) else None
                tensors[role or tensor] = self.initializers[tensor]
        if any(math.prod(t.dims) > 0 for t in tensors.values()):
            self.parameters[node_id] = _lazy_arrays(tensors, self.base_dir, self.shown, self.notes, self.max_memory)

    # -- tensors ----------------------------------------------------------------------------

    def _shape_of(self, node, position: int) -> tuple[int, ...] | None:
        """Shape of the node's ``position``-th input (initializer dims or inferred shape)."""
        if position >= len(node.input) or not node.input[position]:
            return None
        tensor = node.input[position]
        if tensor in self.initializers:
            return tuple(self.initializers[tensor].dims)
        return self.shapes.get(tensor)

    def _constant(self, tensor: str) -> np.ndarray | None:
        """The value of a small initializer or ``Constant`` node output, else ``None``."""
        from onnx import helper, numpy_helper

        if tensor in self.initializers:
            proto = self.initializers[tensor]
        elif tensor in self.constant_nodes:
            attrs = {a.name: helper.get_attribute_value(a) for a in self.constant_nodes[tensor].attribute}
            if "value" not in attrs:
                value = next((v for k, v in attrs.items() if k.startswith("value_")), None)
                small = value is not None and np.size(value) <= _MAX_CONSTANT_SIZE
                return np.asarray(value) if small else None
            proto = attrs["value"]
        else:
            return None
        if math.prod(proto.dims) > _MAX_CONSTANT_SIZE:
            return None
        return numpy_helper.to_array(proto, self.base_dir)

    # -- preprocessing ----------------------------------------------------------------------

    def _image_input(self) -> tuple[str, tuple[int, int, int] | None, str | None] | None:
        """(tensor name, (C, H, W) or None, layout or None) of the first 4-D graph input."""
        for value in self.inputs:
            if not value.type.HasField("tensor_type") or len(value.type.tensor_type.shape.dim) != 4:
                continue
            shape = self.shapes.get(value.name)
            if shape is None:
                return value.name, None, None
            layout = "NHWC" if shape[3] <= 4 < shape[1] else "NCHW"
            size = shape[1:] if layout == "NCHW" else (shape[3], shape[1], shape[2])
            return value.name, size, layout
        return None

    def _preprocessing(self, image) -> Preprocessing:
        if image is None:
            return Preprocessing()
        tensor, size, layout = image
        found = self._normalization(tensor, size, layout)
        if found is None:
            return Preprocessing(input_size=size)
        chain, mean, std = found
        for index in chain:
            self.g.nodes[self.ids[index]]["op"] = Op.NORMALIZE
        return Preprocessing(mean=mean, std=std, input_size=size, origin="onnx graph")

    def _normalization(self, tensor: str, size, layout):
        """(node indices, mean, std) of a per-channel affine chain ``x * a + b`` on the input."""
        chain, steps = [], []
        while len(self.consumers.get(tensor, ())) == 1:
            index = self.consumers[tensor][0]
            node = self.nodes[index]
            if not node.output:
                break
            step = self._affine_step(node, tensor)
            if step is None and not (node.op_type in ("Cast", "Identity") and not chain):
                break
            if step is not None:
                chain.append(index)
                steps.append(step)
            tensor = node.output[0]
        scale, shift = np.ones(1), np.zeros(1)
        for step_scale, step_shift in steps:
            scale, shift = scale * step_scale, shift * step_scale + step_shift
        channels = _per_channel(scale, shift, size, layout) if chain else None
        if channels is None:
            return None
        a, b = channels
        pixels = self._pixel_scale(steps[0], a, b)
        self.metadata["input_pixel_scale"] = pixels
        std = tuple(float(1.0 / (x * pixels)) for x in a)
        mean = tuple(float(-y / x) / pixels for x, y in zip(a, b, strict=True))
        return chain, mean, std

    def _affine_step(self, node, tensor: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(scale, shift)`` with ``y = x * scale + shift`` when ``node`` is ``x <op> constant``."""
        if node.op_type not in _AFFINE_OPS or node.domain not in _STANDARD_DOMAINS or len(node.input) != 2:
            return None
        if list(node.input).count(tensor) != 1 or not node.output:
            return None
        x_first = node.input[0] == tensor
        c = self._constant(node.input[1] if x_first else node.input[0])
        if c is None or c.dtype.kind not in "fiu" or c.size == 0 or c.ndim > 4:
            return None
        c = c.astype(np.float64)
        if not np.all(np.isfinite(c)):
            return None
        if node.op_type == "Add":
            return np.ones(1), c
        if node.op_type == "Mul":
            return c, np.zeros(1)
        if not x_first or (node.op_type == "Div" and np.any(c == 0)):
            return None
        return (np.ones(1), -c) if node.op_type == "Sub" else (1.0 / c, np.zeros(1))

    def _pixel_scale(self, first_step, a: np.ndarray, b: np.ndarray) -> float:
        """255 when the input is on a 0..255 scale (an explicit /255, or constants in 0..255 units)."""
        scale, shift = first_step
        if scale.size == 1 and not shift.any() and abs(scale.item() * 255 - 1) < 1e-3:
            self.notes.append(
                "the graph divides its input by 255: the model takes pixels in 0..255; "
                "mean and std are reported for pixels in [0, 1]"
            )
            return 255.0
        if np.any(1.0 / a > 1.5) or np.any(np.abs(b / a) > 1.5):
            self.notes.append(
                "the input normalization constants are in 0..255 pixel units: the model takes pixels "
                "in 0..255; mean and std are reported for pixels in [0, 1]"
            )
            return 255.0
        return 1.0

    # -- notes ------------------------------------------------------------------------------

    def _add_notes(self, image) -> None:
        from onnx import AttributeProto

        if image is None:
            self.notes.append("no 4-D image input found: input size and preprocessing are unknown")
        elif image[2] == "NHWC":
            self.notes.append("the image input is channels-last (NHWC)")
        if image is not None:
            self.metadata["input_layout"] = image[2]
        custom = Counter(n.domain for n in self.nodes if n.domain not in _STANDARD_DOMAINS)
        for domain, count in sorted(custom.items()):
            self.notes.append(f"{count} node(s) from custom op domain {domain!r} are treated as 'other'")
        graph_types = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
        subgraphs = sum(1 for n in self.nodes if any(a.type in graph_types for a in n.attribute))
        if subgraphs:
            self.notes.append(f"{subgraphs} control-flow node(s) have subgraphs that are not analysed")
        placeholders = self._placeholder_weights()
        if placeholders:
            self.notes.append(
                f"{placeholders} layer(s) take weights from ConstantOfShape (constant placeholders, not trained values)"
            )

    def _placeholder_weights(self) -> int:
        makers = {n.output[0] for n in self.nodes if n.op_type == "ConstantOfShape" and n.output}
        return sum(
            1
            for n in self.nodes
            if _KINDS.get(n.op_type) in (Op.CONV, Op.LINEAR) and len(n.input) > 1 and n.input[1] in makers
        )


# -- helpers ------------------------------------------------------------------------------------


def _tensor_shapes(graph) -> dict[str, tuple[int, ...] | None]:
    return {v.name: _shape(v.type) for v in [*graph.input, *graph.value_info, *graph.output]}


def _shape(type_proto) -> tuple[int, ...] | None:
    """Static shape of a tensor type; a symbolic batch dim reads as 1, other unknown dims give None."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = type_proto.tensor_type.shape.dim
    shape = []
    for position, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            shape.append(dim.dim_value)
        elif position == 0 and len(dims) >= 2:
            shape.append(1)
        else:
            return None
    return tuple(shape)


def _node_ids(nodes) -> dict[int, str]:
    """Index -> id: the node name when unique and non-empty, else ``{op_type}_{index}``."""
    counts = Counter(node.name for node in nodes)
    ids = {i: node.name for i, node in enumerate(nodes) if node.name and counts[node.name] == 1}
    taken = set(ids.values())
    for i, node in enumerate(nodes):
        if i not in ids:
            ids[i] = _unique(f"{node.op_type}_{i}", taken)
            taken.add(ids[i])
    return ids


def _unique(candidate: str, taken: set[str]) -> str:
    if candidate not in taken:
        return candidate
    suffix = 2
    while f"{candidate}_{suffix}" in taken:
        suffix += 1
    return f"{candidate}_{suffix}"


def _raw_attributes(node) -> dict[str, Any]:
    """ONNX attributes as Python values (lists as tuples, bytes as str)."""
    from onnx import helper

    values = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        values[attr.name] = tuple(value) if isinstance(value, list) else value
    return values


def _pick(raw: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: raw[name] for name in names if name in raw}


def _window_attrs(node_id: str, raw: dict, kernel: tuple[int, ...], in_shape) -> dict[str, Any]:
    """kernel, stride, dilation, padding (begin pads), pads (all) and auto_pad of a conv or pool."""
    n = len(kernel)
    auto_pad = raw.get("auto_pad", "NOTSET")
    if n == 0:
        unknown = dict.fromkeys(("kernel", "stride", "dilation", "padding", "pads"))
        return unknown | {"auto_pad": auto_pad}
    attrs = {
        "kernel": kernel,
        "stride": tuple(raw.get("strides") or (1,) * n),
        "dilation": tuple(raw.get("dilations") or (1,) * n),
    }
    for key, value in attrs.items():
        if len(value) != n or any(v < 1 for v in value):
            raise ValueError(f"node {node_id}: invalid {key} {value}")
    pads = tuple(raw.get("pads") or (0,) * (2 * n))
    if auto_pad == "VALID":
        pads = (0,) * (2 * n)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(attrs, in_shape, upper=auto_pad == "SAME_UPPER")
    if pads is not None and (len(pads) != 2 * n or any(p < 0 for p in pads)):
        raise ValueError(f"node {node_id}: invalid pads {pads}")
    return attrs | {"padding": pads[:n] if pads else None, "pads": pads, "auto_pad": auto_pad}


def _same_pads(attrs: dict, in_shape, upper: bool) -> tuple[int, ...] | None:
    """Explicit pads for ``auto_pad=SAME_*`` (extra pad at the end for UPPER), if the input is known."""
    kernel, stride, dilation = attrs["kernel"], attrs["stride"], attrs["dilation"]
    if not in_shape or len(in_shape) != len(kernel) + 2:
        return None
    begins, ends = [], []
    for size, k, s, d in zip(in_shape[2:], kernel, stride, dilation, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return tuple(begins + ends)


def _per_channel(scale: np.ndarray, shift: np.ndarray, size, layout: str | None):
    """Per-channel ``(a, b)`` arrays from broadcastable constants, or None if not per channel."""
    try:
        a, b = np.broadcast_arrays(scale, shift)
    except ValueError:
        return None
    if a.ndim > 4:
        return None
    a, b = (x.reshape((1,) * (4 - x.ndim) + x.shape) for x in (a, b))
    wide = [axis for axis, n in enumerate(a.shape) if n != 1]
    axis = {"NCHW": 1, "NHWC": 3}.get(layout, wide[0] if wide else 1)
    channels = size[0] if size else a.shape[axis]
    if any(x != axis for x in wide) or a.shape[axis] not in (1, channels) or axis not in (1, 3):
        return None
    a, b = (np.broadcast_to(x.reshape(-1), (channels,)) for x in (a, b))
    return (a, b) if np.all(a > 0) else None


def _lazy_arrays(tensors: dict, base_dir: str, shown: str, notes: list[str],
                 max_memory: int) -> Callable[[], dict[str, np.ndarray]]:
    """A loader that reads the tensors (external data relative to ``base_dir``) when called, or
    nothing (with a note) when this process would pass ``max_memory`` reading and using them: the raw
    bytes twice (read, then the array) and a float64 copy and its square for a rule, 2 * raw + 16
    bytes per value."""
    from onnx import helper

    values = sum(math.prod(t.dims) for t in tensors.values())
    raw = sum(math.prod(t.dims) * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
              for t in tensors.values() if t.data_type)
    cost = 2 * raw + 16 * values

    def load() -> dict[str, np.ndarray]:
        from onnx import numpy_helper

        if memory.resident_bytes() + cost > max_memory:
            note = (f"weights of {', '.join(t.name for t in tensors.values())} not read: {memory.shown(raw)} "
                    f"(about {memory.shown(cost)} to check) is over the memory budget of "
                    f"{memory.shown(max_memory)} (--max-memory); the rules that need them did not run on them")
            if note not in notes:
                notes.append(note)
            return {}
        try:
            return {key: numpy_helper.to_array(tensor, base_dir) for key, tensor in tensors.items()}
        except Exception as exc:
            raise LoadError(f"{shown}: cannot read weights ({one_line(exc)})") from exc

    return load
