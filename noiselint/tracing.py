"""Read a torch ``nn.Module`` into a :class:`ModelGraph`, with shapes, on the meta device.

Four levels, each tried when the one before fails, so there is never a dead end:

1. ``fx``: torch.fx symbolic tracing (timm's leaf modules and autowrapped functions respected),
   shapes from ``ShapeProp`` on a meta tensor (by formula for common layers: ``noiselint.meta``);
2. ``hooks``: an eager meta forward recording every leaf module and torch function it runs, with
   data flow followed by tensor identity (handles Python control flow on shapes), shapes by the same
   formulas where they apply. Tried before export because export imports ``torch._dynamo`` (seconds);
3. ``export``: ``torch.export`` (non-strict) on a meta tensor, aten ops mapped back to modules; then,
   when the forward branches on tensor values, the ``hooks`` forward once more, on CPU with random
   weights for models small enough;
4. ``structural``: the named leaf modules in registration order, without shapes.

The report states the level used and its coverage: the share of leaf modules in the graph with a shape.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from functools import partial
from typing import Any

import networkx as nx
import torch
import torch.fx
import torch.nn as nn
from torch.utils._pytree import tree_map

from noiselint.errors import one_line
from noiselint.graph import ModelGraph, Op, Preprocessing, SourceLocation, add_node
from noiselint.memory import DEFAULT_MAX_MEMORY, MemoryBudgetError, resident_bytes, shown
from noiselint.meta import DispatchFormulaMode, by_formula
from noiselint.normalization import forward_normalization
from noiselint.ops import function_op, method_op, module_op
from noiselint.sites import display_path, internal_dirs

#: Models up to this many parameters may be materialized on CPU for a data-dependent forward.
EAGER_CPU_PARAMETER_LIMIT = 50_000_000


def trace(
    model: nn.Module,
    name: str,
    input_sizes: Sequence[tuple[int, int, int]],
    sites: Mapping[nn.Module, SourceLocation],
    preprocessing: Preprocessing,
    constants: Any = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> ModelGraph:
    """The best graph any level can give for ``model`` (built on the meta device or not).

    ``input_sizes`` are tried in order (one when the size is known; candidates when it is not):
    the graph records the first that traces. ``constants`` (see :mod:`noiselint.build`) holds the
    values of small tensors, from which normalization written in ``forward`` is recovered.
    ``max_memory`` bounds the CPU forward of the hooks level (its weights and kept activations).
    """
    failures: list[str] = []
    levels = (("fx", "fx", _fx_graph), ("hooks", "hooks (meta)", partial(_first_size, _meta_hooks_graph)),
              ("export", "export", partial(_first_size, _export_graph)),
              ("hooks", "hooks (CPU)", partial(_first_size, partial(_hooks_graph, max_memory=max_memory))))
    for level, label, build in levels:
        try:
            graph, notes, size, recovered = build(model, input_sizes, sites, constants)
        except Exception as exc:  # noqa: BLE001 - any failure moves on to the next level
            failures.append(f"{label} tracing failed ({one_line(exc)})")
            continue
        if recovered is not None:
            preprocessing = recovered.merged(preprocessing)
        return _model_graph(model, name, graph, level, size, preprocessing, failures + notes)
    graph, _ = _structural_graph(model, sites)
    return _model_graph(model, name, graph, "structural", input_sizes[0], preprocessing, failures)


#: Candidate input sizes tried at the export and hooks levels (each try costs seconds there).
_SLOW_LEVEL_SIZES = 3


def _first_size(build, model, sizes, sites, constants):
    """``build`` at the first of ``sizes`` that traces; the first size's error when none does."""
    first_error = None
    for size in sizes[:_SLOW_LEVEL_SIZES]:
        try:
            graph, notes = build(model, size, sites)
        except Exception as exc:  # noqa: BLE001 - a wrong size fails anywhere in the forward
            first_error = first_error or exc
            continue
        return graph, notes, size, None
    raise first_error


def _model_graph(model, name, graph, level, input_size, preprocessing, notes) -> ModelGraph:
    leaf_paths = {path for path, module in model.named_modules() if not any(module.children())}
    covered = {data["module_path"] for _, data in graph.nodes(data=True) if data["shape"] is not None}
    covered_leaves = {path for path in leaf_paths if _covered(path, covered)}
    coverage = len(covered_leaves) / len(leaf_paths) if leaf_paths else 1.0
    weights = any(p.device.type != "meta" for p in model.parameters())
    return ModelGraph(
        name=name,
        graph=graph,
        preprocessing=preprocessing,
        trace_level=level,
        coverage=round(coverage, 4),
        traced_input_size=input_size,
        notes=notes,
        weights=weights,
        parameters=_parameter_loaders(model, graph) if weights else {},
        metadata={"module_types": sorted({type(m).__name__ for m in model.modules()})},
    )


#: Real-weight keys per layer kind: the ONNX loader's names (left) for the torch attributes (right).
_CONV_TENSORS = {"weight": "weight", "bias": "bias"}
_NORM_TENSORS = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _parameter_loaders(model: nn.Module, graph: nx.DiGraph) -> dict[str, Callable[[], dict]]:
    """Loaders of real conv and BatchNorm tensors by node id; a norm's eps goes to ``attrs["epsilon"]``."""
    modules = dict(model.named_modules())
    loaders = {}
    for node_id, data in graph.nodes(data=True):
        module = modules.get(data["module_path"]) if data["module_path"] is not None else None
        if data["op"] in Op.CONVOLUTIONS and isinstance(module, nn.modules.conv._ConvNd):
            loaders[node_id] = partial(_tensors_of, module, _CONV_TENSORS)
        elif data["op"] == Op.NORM and getattr(module, "running_var", None) is not None:
            data["attrs"]["epsilon"] = float(module.eps)
            loaders[node_id] = partial(_tensors_of, module, _NORM_TENSORS)
    return loaders


def _tensors_of(module: nn.Module, names: Mapping[str, str]) -> dict:
    tensors = {key: getattr(module, attr, None) for key, attr in names.items()}
    return {key: t.detach().float().cpu().numpy() for key, t in tensors.items() if t is not None}


def _covered(path: str, covered: set) -> bool:
    """True when ``path`` or one of its ancestors (``""`` is the root) is in ``covered``."""
    parts = path.split(".")
    return "" in covered or any(".".join(parts[:i]) in covered for i in range(1, len(parts) + 1))


def _meta_input(model: nn.Module, input_size: tuple[int, int, int]) -> torch.Tensor:
    device = next((p.device for p in model.parameters()), torch.device("meta"))
    if device.type != "meta":
        device = torch.device("meta")
    return torch.empty((1, *input_size), device=device)


# --------------------------------------------------------------------------- fx


#: Modules kept whole in the graph, so rules see a blur or an attention layer rather than its parts.
_OPAQUE_OPS = frozenset({Op.BLUR, Op.ATTENTION})


def _timm_notrace() -> tuple[tuple, tuple]:
    """Leaf module types and autowrapped functions: timm's registered ones, when the model brought
    timm in, and einops' ``rearrange``/``repeat``/``reduce`` (fx cannot trace into them)."""
    functions = ()
    if "einops" in sys.modules:
        import einops

        functions = (einops.rearrange, einops.repeat, einops.reduce)
    if "timm" not in sys.modules:
        return (), functions
    from timm.layers import _fx as timm_fx

    return tuple(timm_fx.get_notrace_modules()), (*timm_fx.get_notrace_functions(), *functions)


def _is_opaque(module: nn.Module, leaf_types: tuple) -> bool:
    """Kept whole in the graph: a timm leaf module, a blur or an attention layer."""
    return isinstance(module, leaf_types) or module_op(module)[0] in _OPAQUE_OPS


class _LeafTracer(torch.fx.Tracer):
    """fx tracer that keeps timm's registered leaf modules and functions opaque."""

    def __init__(self) -> None:
        self._leaf_types, functions = _timm_notrace()
        super().__init__(autowrap_functions=functions)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_leaf(m, self._leaf_types)

    def create_node(self, kind, *args, **kwargs):
        # torch's own stack recording (record_stack_traces) imports torch._dynamo, inductor and
        # torch.export: seconds per run. The line of the call in the model's code is all we need.
        node = super().create_node(kind, *args, **kwargs)
        if kind in ("call_function", "call_method"):
            node.meta["noiselint_source"] = _caller_location()
        return node

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        # torch's getattr scans every named parameter on each access (quadratic: seconds on big
        # models); look names up in a map built once per root instead, with the same result.
        if not isinstance(attr_val, torch.Tensor):
            return attr_val
        if getattr(self, "_names_root", None) is not self.root:
            self._names_root = self.root
            self._names = {id(p): n for n, p in self.root.named_buffers()} if self.proxy_buffer_attributes else {}
            self._names.update((id(p), n) for n, p in self.root.named_parameters())
        name = self._names.get(id(attr_val))
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]


def _fx_graph(model, input_sizes, sites, constants=None):
    """The fx graph, traced once, with shapes at the first of ``input_sizes`` that propagates."""
    from noiselint.meta import FormulaShapeProp

    tracer = _LeafTracer()
    fx_graph = tracer.trace(model)
    module = torch.fx.GraphModule(tracer.root, fx_graph)
    first_error = None
    for size in input_sizes:
        for node in fx_graph.nodes:
            node.meta.pop("tensor_meta", None)
        try:
            FormulaShapeProp(module).propagate(_meta_input(model, size))
        except Exception as exc:  # noqa: BLE001 - a wrong size fails anywhere in the forward
            first_error = first_error or exc
            continue
        normalization = forward_normalization(fx_graph, module, constants)
        return _read_fx(fx_graph, model, sites, normalization), [], size, normalization and normalization[1]
    raise first_error


def _read_fx(fx_graph, model, sites, normalization) -> nx.DiGraph:
    folded = {n.name for n in normalization[0]} if normalization else set()
    modules = dict(model.named_modules())
    graph = nx.DiGraph()
    order = 0
    for node in fx_graph.nodes:
        if node.op == "get_attr":
            continue
        kind, attrs, path = _fx_node_op(node, modules)
        if node.name in folded:
            kind = Op.NORMALIZE
        source = sites.get(modules[path]) if node.op == "call_module" and path in modules else None
        if source is None and node.op in ("call_function", "call_method"):
            source = node.meta.get("noiselint_source") or (sites.get(modules.get(path)) if path else None)
        add_node(graph, node.name, kind, order=order, attrs=attrs, shape=_fx_shape(node),
                 module_path=path, module_type=_fx_type(node, modules), source=source)
        order += 1
        for arg in node.all_input_nodes:
            if arg.name in graph:
                graph.add_edge(arg.name, node.name)
    return graph


def _fx_node_op(node, modules) -> tuple[str, dict, str | None]:
    if node.op == "placeholder":
        return Op.INPUT, {}, None
    if node.op == "output":
        return Op.OUTPUT, {}, None
    stack = node.meta.get("nn_module_stack") or {}
    owner = _stack_path(list(stack.values())[-1]) if stack else None
    if node.op == "call_module":
        kind, attrs = module_op(modules[node.target])
        return kind, attrs, node.target
    if node.op == "call_function":
        kind, attrs = function_op(node.target, node.args, node.kwargs)
        if kind == Op.CONV and len(node.args) > 1:
            weight = node.args[1].meta.get("tensor_meta") if hasattr(node.args[1], "meta") else None
            if weight is not None:
                attrs["kernel"] = tuple(weight.shape[2:])
                attrs["out_channels"] = weight.shape[0]
        return kind, attrs, owner
    kind, attrs = method_op(node.target, node.args, node.kwargs)
    return kind, attrs, owner


def _stack_path(entry: Any) -> str:
    path = entry[0] if isinstance(entry, tuple) else str(entry)
    return path.replace("L['self'].", "").replace("L__self___", "")


def _fx_type(node, modules) -> str | None:
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op in ("call_function", "call_method"):
        return getattr(node.target, "__name__", str(node.target))
    return None


def _fx_shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(int(d) for d in shape) if shape is not None else None


def _stack_trace_location(stack_trace: str | None) -> SourceLocation | None:
    """The innermost frame of an fx stack trace that is not inside torch itself."""
    if not stack_trace:
        return None
    frames = [line.strip() for line in stack_trace.splitlines() if line.strip().startswith('File "')]
    for frame in reversed(frames):
        path, _, rest = frame[6:].partition('", line ')
        if "/torch/" in path:
            continue
        line = rest.split(",", 1)[0]
        if line.isdigit():
            return SourceLocation(display_path(path), int(line), 1)
    return None


# --------------------------------------------------------------------------- export

_ATEN_OPS = {
    "convolution": Op.CONV, "conv2d": Op.CONV, "conv1d": Op.CONV,
    "max_pool2d": Op.MAX_POOL, "max_pool2d_with_indices": Op.MAX_POOL,
    "avg_pool2d": Op.AVG_POOL, "adaptive_avg_pool2d": Op.ADAPTIVE_AVG_POOL,
    "_adaptive_avg_pool2d": Op.ADAPTIVE_AVG_POOL, "adaptive_max_pool2d": Op.ADAPTIVE_MAX_POOL,
    "linear": Op.LINEAR, "addmm": Op.LINEAR, "mm": Op.LINEAR, "bmm": Op.LINEAR, "matmul": Op.LINEAR,
    "add": Op.ADD, "mul": Op.MUL, "cat": Op.CONCAT,
    "relu": Op.ACTIVATION, "gelu": Op.ACTIVATION, "silu": Op.ACTIVATION, "sigmoid": Op.ACTIVATION,
    "hardswish": Op.ACTIVATION, "softmax": Op.ACTIVATION, "_softmax": Op.ACTIVATION,
    "batch_norm": Op.NORM, "_native_batch_norm_legit_no_training": Op.NORM, "layer_norm": Op.NORM,
    "native_layer_norm": Op.NORM, "group_norm": Op.NORM,
    "scaled_dot_product_attention": Op.ATTENTION,
    "upsample_bilinear2d": Op.RESIZE, "upsample_nearest2d": Op.RESIZE,
    "view": Op.RESHAPE, "reshape": Op.RESHAPE, "permute": Op.RESHAPE, "flatten": Op.RESHAPE,
    "transpose": Op.RESHAPE,
}


@contextmanager
def _quiet():
    """Silence torch's logging and prints while export runs (failures are reported as notes)."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with open(os.devnull, "w") as sink, redirect_stdout(sink), redirect_stderr(sink):
            yield
    finally:
        logger.setLevel(level)


def _export_graph(model, input_size, sites):
    """The graph of ``torch.export``, read back to the fx level's granularity.

    Export records aten ops; the ops of one call of a leaf module (what fx keeps whole) are folded
    into one node whose op and attributes come from the module itself, so both levels produce the
    same graph. Functional calls get their attributes from the op's schema, defaults included.
    """
    with _quiet():
        program = torch.export.export(model, (_meta_input(model, input_size),), strict=False)
    modules = dict(model.named_modules())
    leaf_types, _ = _timm_notrace()
    graph = nx.DiGraph()
    node_of: dict[str, str] = {}  # export node name -> graph node id
    calls: dict[str, str] = {}  # a leaf module's call key -> graph node id
    order = 0
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name not in program.graph_signature.user_inputs:
            continue
        call_key, path = _leaf_call(node, modules, leaf_types)
        shape = _export_shape(node.meta.get("val"))
        if call_key is not None and call_key in calls:
            node_id = calls[call_key]
            if shape is not None:
                graph.nodes[node_id]["shape"] = shape
        else:
            module = modules.get(path) if call_key is not None else None
            if module is not None:
                kind, attrs = module_op(module)
                module_type, source = type(module).__name__, sites.get(module)
            else:
                kind, attrs, path = _export_node_op(node)
                owner = modules.get(path) if path is not None else None
                module_type, source = str(node.target), None
                if node.op == "call_function":
                    source = _stack_trace_location(node.meta.get("stack_trace")) or (
                        sites.get(owner) if owner is not None else None)
            node_id = node.name
            add_node(graph, node_id, kind, order=order, attrs=attrs, shape=shape, module_path=path,
                     module_type=module_type, source=source)
            order += 1
            if call_key is not None:
                calls[call_key] = node_id
        node_of[node.name] = node_id
        for arg in node.all_input_nodes:
            source_id = node_of.get(arg.name)
            if source_id is not None and source_id != node_id:
                graph.add_edge(source_id, node_id)
    return graph, []


def _is_leaf(module: nn.Module, leaf_types: tuple) -> bool:
    """A module fx keeps whole: torch's own layers and the user's subclasses of them, timm's leaf
    modules, blurs and attention."""
    if _is_opaque(module, leaf_types) or _is_layer_subclass(module) or type(module).__module__.startswith("einops"):
        return True
    return type(module).__module__.startswith(("torch.nn", "torch.ao.nn")) and not isinstance(module, nn.Sequential)


_LAYER_BASES = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
_PADDING = (nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
            nn.modules.padding._ReplicationPadNd, nn.Identity)


def _is_layer_subclass(module: nn.Module) -> bool:
    """A subclass of a torch conv, linear or pooling layer whose only children pad its input
    (``Conv2dSame``, lukemelas' ``Conv2dStaticSamePadding``): one layer, read from its attributes
    and located where it was built, not at the ``F.conv2d`` in its ``forward``."""
    return isinstance(module, _LAYER_BASES) and all(isinstance(child, _PADDING) for child in module.children())


def _leaf_call(node, modules: Mapping[str, nn.Module], leaf_types: tuple) -> tuple[str | None, str | None]:
    """(call key, module path) of the outermost leaf module whose call produced an export node."""
    if node.op != "call_function":
        return None, None
    for key, entry in (node.meta.get("nn_module_stack") or {}).items():
        path = _stack_path(entry)
        module = modules.get(path)
        if path and module is not None and _is_leaf(module, leaf_types):
            return key, path
    return None, None


def _export_shape(val) -> tuple[int, ...] | None:
    if isinstance(val, (tuple, list)) and val and isinstance(val[0], torch.Tensor):
        val = val[0]
    return tuple(int(d) for d in val.shape) if isinstance(val, torch.Tensor) else None


def _schema_arguments(node) -> dict[str, Any]:
    """An aten call's arguments by name, with the schema's defaults for those left out."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {}
    named = {}
    for index, argument in enumerate(schema.arguments):
        if index < len(node.args):
            named[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            named[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            named[argument.name] = argument.default_value
    return named


def _export_node_op(node) -> tuple[str, dict, str | None]:
    if node.op == "placeholder":
        return Op.INPUT, {}, None
    if node.op == "output":
        return Op.OUTPUT, {}, None
    stack = node.meta.get("nn_module_stack") or {}
    path = _stack_path(list(stack.values())[-1]) if stack else None
    aten_name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", str(node.target))
    kind = _ATEN_OPS.get(aten_name, Op.OTHER)
    attrs: dict[str, Any] = {"aten": aten_name}
    args = _schema_arguments(node)
    weight = args.get("weight")
    weight = weight.meta.get("val") if isinstance(weight, torch.fx.Node) else None
    if kind == Op.CONV and weight is not None:
        groups = int(args.get("groups", 1))
        padding = args.get("padding", 0)
        attrs.update(kernel=tuple(weight.shape[2:]), stride=_ints(args.get("stride", 1), weight.dim() - 2),
                     padding=padding if isinstance(padding, str) else _ints(padding, weight.dim() - 2),
                     dilation=_ints(args.get("dilation", 1), weight.dim() - 2), groups=groups,
                     in_channels=int(weight.shape[1]) * groups, out_channels=int(weight.shape[0]),
                     transposed=bool(args.get("transposed", False)))
    elif kind in (Op.MAX_POOL, Op.AVG_POOL) and "kernel_size" in args:
        kernel = _ints(args["kernel_size"], 2)
        attrs.update(kernel=kernel, window=kernel, stride=_ints(args.get("stride") or kernel, 2),
                     padding=_ints(args.get("padding", 0), 2))
    elif kind in (Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL) and "output_size" in args:
        attrs["output_size"] = _ints(args["output_size"], 2)
    return kind, attrs, path


def _ints(value, n: int) -> tuple[int, ...]:
    """An int or a list of ints as a tuple of ``n`` ints (a one-element list broadcasts)."""
    values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    return tuple(values * n) if len(values) == 1 else tuple(values)


# --------------------------------------------------------------------------- hooks


def _meta_hooks_graph(model, input_size, sites):
    return _eager_graph(model, _meta_input(model, input_size), sites), []


def _hooks_graph(model, input_size, sites, max_memory=DEFAULT_MAX_MEMORY):
    """The eager forward on CPU with random weights, for a forward that cannot run on meta tensors
    (it branches on tensor values: the ``hooks (meta)`` note says where)."""
    parameters = sum(p.numel() for p in model.parameters())
    if parameters > EAGER_CPU_PARAMETER_LIMIT:
        raise RuntimeError(f"{parameters:,} parameters: too many for a CPU forward with random weights "
                           f"(limit {EAGER_CPU_PARAMETER_LIMIT:,})")
    tensors = [*model.parameters(), *model.buffers()]
    budget = _Budget(max_memory, "x".join(map(str, input_size)))
    budget.take(sum(t.numel() * t.element_size() for t in tensors) + 4 * math.prod(input_size), "its weights and input")
    cpu_model = _materialize(model)
    x = torch.randn(1, *input_size)
    budget.held.update(_storage(t) for t in [*cpu_model.parameters(), *cpu_model.buffers(), x])
    graph = _eager_graph(cpu_model, x, sites, originals=dict(
        zip((id(m) for m in cpu_model.modules()), model.modules(), strict=True)), budget=budget)
    note = (f"the forward depends on tensor values (it cannot run on meta tensors); ran it once on CPU "
            f"with random weights (peak about {shown(budget.used)}): branches not taken are missing "
            "from the graph")
    return graph, [note]


class _Budget:
    """This process's memory while the hooks level's CPU forward runs: what it held before, plus the
    weights, input and kept activations; an operation that could pass ``limit`` (``--max-memory``) is
    refused before it runs."""

    def __init__(self, limit: int, size: str) -> None:
        self.limit, self.size, self.used = limit, size, resident_bytes()
        self.held: set[int] = set()  # the storages counted in ``used``

    def take(self, size: int, what: str) -> None:
        if self.used + size > self.limit:
            raise MemoryBudgetError(
                f"the CPU forward with random weights at input {self.size} would pass the memory budget of "
                f"{shown(self.limit)} (--max-memory) at {what} ({shown(self.used)} held, {shown(size)} more)")
        self.used += size

    def keep(self, tensor: torch.Tensor, what: str) -> None:
        """Count ``tensor``'s storage, kept alive until the forward ends, unless it is counted already."""
        with torch._C.DisableTorchFunction():  # not an operation of the model
            if _storage(tensor) not in self.held:
                self.take(tensor.untyped_storage().nbytes(), what)
                self.held.add(_storage(tensor))

    def check(self, func, args, kwargs) -> None:
        """Refuse ``func`` before it runs when, at its peak, its inputs not counted yet (intermediates of
        a leaf module), its output (sized on meta copies) and its workspace would not fit."""
        def meta(value):
            return value.to("meta") if isinstance(value, torch.Tensor) and value.device.type != "meta" else value

        try:
            with torch._C.DisableTorchFunction():
                output = func(*tree_map(meta, args), **tree_map(meta, kwargs))
        except Exception:  # noqa: BLE001 - a value-dependent op: its output is small or unknowable
            return
        inputs = {_storage(t): t.untyped_storage().nbytes() for t in _tensors((args, kwargs))
                  if t.device.type != "meta" and _storage(t) not in self.held}
        size = sum(t.numel() * t.element_size() for t in _tensors(output))
        peak = sum(inputs.values()) + size + max(size, _conv_workspace(func, args, kwargs, output))
        if self.used + peak > self.limit:
            self.take(peak, getattr(func, "__name__", "an operation"))


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _conv_workspace(func, args, kwargs, output) -> int:
    """The im2col (col2im for transposed) buffer of CPU convolution's fallback kernel: input channels per
    group x kernel x output (input) pixels; reorders of the other kernels need about one output, counted
    by the caller. 0 for other operations and 1x1 kernels."""
    name = getattr(func, "__name__", "")
    weight = args[1] if len(args) > 1 else kwargs.get("weight")
    if not name.startswith(("conv", "_convolution")) or not isinstance(weight, torch.Tensor) or weight.dim() < 3:
        return 0
    kernel = math.prod(weight.shape[2:])
    if kernel == 1 or not isinstance(output, torch.Tensor) or output.dim() != weight.dim():
        return 0
    if "transpose" in name:
        x = args[0] if args else kwargs.get("input")
        pixels = math.prod(x.shape[2:]) * x.shape[0] if isinstance(x, torch.Tensor) and x.dim() == weight.dim() else 0
    else:
        pixels = math.prod(output.shape[2:]) * output.shape[0]
    return weight.shape[1] * kernel * pixels * output.element_size()


def _materialize(model: nn.Module) -> nn.Module:
    """A CPU copy of a meta model with small random weights (for a value-dependent forward)."""
    import copy

    if all(p.device.type != "meta" for p in model.parameters()):
        return model
    clone = copy.deepcopy(model).to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*clone.parameters(), *clone.buffers()]:
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02)
    return clone.eval()


class _Recorder(torch.overrides.TorchFunctionMode):
    """Records leaf-module calls (via hooks) and torch function calls between them."""

    def __init__(self, graph: nx.DiGraph, budget: _Budget | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.budget = budget  # the CPU forward: each op's output is checked against it before it runs
        self.producers: dict[int, str] = {}
        self.keep: list[torch.Tensor] = []  # keeps ids unique while recording
        self.depth_in_leaf = 0
        self.stack: list[str] = []
        self.order = 0
        self.last: str | None = None

    def add(self, node_id, kind, attrs, inputs, output, path, module_type, source):
        if node_id in self.graph:  # a module called more than once (shared activation, ...)
            node_id = f"{node_id}_{self.order}"
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        add_node(self.graph, node_id, kind, order=self.order, attrs=attrs, shape=shape,
                 module_path=path, module_type=module_type, source=source)
        self.order += 1
        sources = {self.producers[id(t)] for t in inputs if isinstance(t, torch.Tensor) and id(t) in self.producers}
        for producer in sources or ({self.last} if self.last else set()):
            self.graph.add_edge(producer, node_id)
        for tensor in _tensors(output):
            self.producers[id(tensor)] = node_id
            self.keep.append(tensor)
            if self.budget is not None:
                self.budget.keep(tensor, node_id)
        self.last = node_id

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.budget is not None:
            self.budget.check(func, args, kwargs)
        result = by_formula(func, args, kwargs)  # meta inputs a formula fits: no meta kernel runs
        if result is None:
            with torch._C.DisableTorchFunction():
                result = func(*args, **kwargs)
        if self.depth_in_leaf == 0:
            kind, attrs = function_op(func, args, kwargs)
            if kind != Op.OTHER:
                if kind == Op.CONV and len(args) > 1 and isinstance(args[1], torch.Tensor):
                    attrs["kernel"] = tuple(args[1].shape[2:])
                node_id = f"{getattr(func, '__name__', 'op')}_{self.order}"
                self.add(node_id, kind, attrs, _tensors((args, kwargs)), result,
                         self.stack[-1] if self.stack else None, attrs.get("function"), _caller_location())
        return result


def _caller_location() -> SourceLocation | None:
    """The innermost frame outside torch and noiselint: the line of a functional call in a forward."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(internal_dirs()):
            return SourceLocation(display_path(path), frame.f_lineno, 1)
        frame = frame.f_back
    return None


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _eager_graph(model, x, sites, originals: Mapping[int, nn.Module] | None = None, budget: _Budget | None = None):
    graph = nx.DiGraph()
    recorder = _Recorder(graph, budget)
    add_node(graph, "input", Op.INPUT, order=0, shape=tuple(x.shape))
    recorder.order, recorder.last = 1, "input"
    recorder.producers[id(x)] = "input"
    handles = []
    leaf_types, _ = _timm_notrace()
    for path, module in model.named_modules():
        is_leaf = _is_leaf(module, leaf_types)
        original = originals.get(id(module), module) if originals else module
        handles.append(module.register_forward_pre_hook(_pre_hook(recorder, path, is_leaf)))
        handles.append(module.register_forward_hook(_post_hook(recorder, path, module, original, is_leaf, sites)))
    try:
        with torch.no_grad(), recorder, DispatchFormulaMode() if x.is_meta else nullcontext():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    add_node(graph, "output", Op.OUTPUT, order=recorder.order, shape=None)
    for tensor in _tensors(output):
        if id(tensor) in recorder.producers:
            graph.add_edge(recorder.producers[id(tensor)], "output")
    return graph


def _pre_hook(recorder: _Recorder, path: str, is_leaf: bool) -> Callable:
    def hook(module, inputs):
        recorder.stack.append(path)
        if is_leaf:
            recorder.depth_in_leaf += 1

    return hook


def _post_hook(recorder, path, module, original, is_leaf, sites) -> Callable:
    def hook(mod, inputs, output):
        recorder.stack.pop()
        if not is_leaf:
            return
        recorder.depth_in_leaf -= 1
        if recorder.depth_in_leaf == 0:
            kind, attrs = module_op(module)
            recorder.add(path.replace(".", "_") or "model", kind, attrs, _tensors(inputs), output, path,
                         type(module).__name__, sites.get(original))

    return hook


# --------------------------------------------------------------------------- structural


def _structural_graph(model, sites):
    graph = nx.DiGraph()
    previous = None
    order = 0
    for path, module in model.named_modules():
        if any(module.children()) or not path:
            continue
        kind, attrs = module_op(module)
        node_id = path.replace(".", "_")
        add_node(graph, node_id, kind, order=order, attrs=attrs, module_path=path,
                 module_type=type(module).__name__, source=sites.get(module))
        if previous is not None:
            graph.add_edge(previous, node_id)
        previous, order = node_id, order + 1
    return graph, []
