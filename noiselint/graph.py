"""The one graph every model source is read into.

A :class:`ModelGraph` wraps a ``networkx.DiGraph`` whose nodes are operations in execution order
and whose edges are data flow. The torch.fx path (``noiselint.tracing``) and the ONNX path
(``noiselint.loaders.onnx_loader``) both produce it, so rules never know where a model came from.

Node attributes (every node has all of them; unknown values are ``None``):

``op``          normalized op kind, one of :class:`Op`
``attrs``       dict of op attributes: ``kernel``, ``stride``, ``padding``, ``dilation`` (tuples of
                ints), ``groups``, ``in_channels``, ``out_channels``, ``window`` (pooling),
                ``output_size`` (adaptive pooling), ``scale`` (resize), ``mode``
``shape``       output shape as a tuple of ints (batch first), or ``None`` when not propagated
``module_path`` dotted path of the owning ``nn.Module`` (``layer1.0.conv1``) or the ONNX node name
``module_type`` class name (``Conv2d``) or the ONNX op type (``Conv``)
``source``      :class:`SourceLocation` of the line that constructed the layer, or ``None``
``stem``        True for nodes from the input to the end of the first downsampling stage
``order``       position in execution order (int)

Analyses (``noiselint.passes``) run once and write further keys onto nodes; rules only read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from noiselint.errors import UsageError

if TYPE_CHECKING:  # annotations only: importing networkx costs ~0.3 s on a warm-cache run
    import networkx as nx


class Op:
    """Normalized op kinds shared by every graph source."""

    INPUT = "input"
    OUTPUT = "output"
    CONV = "conv"
    PATCH_EMBED = "patch_embed"  # conv with kernel == stride > 1 on the model input (ViT stems)
    SUBSAMPLE = "subsample"  # strided 1x1 conv: nearest-neighbour subsampling plus a projection
    LINEAR = "linear"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    ADAPTIVE_MAX_POOL = "adaptive_max_pool"
    ADAPTIVE_AVG_POOL = "adaptive_avg_pool"
    BLUR = "blur"  # fixed low-pass filter (anti-aliasing, e.g. timm BlurPool2d)
    NORM = "norm"  # BatchNorm, LayerNorm, GroupNorm, ...
    ACTIVATION = "activation"
    ATTENTION = "attention"
    RESIZE = "resize"
    ADD = "add"
    MUL = "mul"
    CONCAT = "concat"
    RESHAPE = "reshape"  # flatten, view, permute, ...
    NORMALIZE = "normalize"  # input normalization folded into the graph ((x - mean) / std)
    OTHER = "other"

    POOLING = frozenset({MAX_POOL, AVG_POOL, ADAPTIVE_MAX_POOL, ADAPTIVE_AVG_POOL})
    CONVOLUTIONS = frozenset({CONV, PATCH_EMBED, SUBSAMPLE})


@dataclass(frozen=True)
class SourceLocation:
    """A position in a source file (1-based line and column).

    ``related`` holds further lines behind it, not part of its identity: for a layer built by a
    helper (``self.stem = conv_bn(...)``), the location is the call site and ``related`` the
    helper's own line (SARIF ``relatedLocations``).
    """

    path: str
    line: int
    column: int = 1
    related: tuple[SourceLocation, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


#: The largest input noiselint lints at (a size past it is a typo, and would build giant tensors).
MAX_CHANNELS, MAX_SIDE = 1024, 16384


def _finite_scaling(mean: float, std: float) -> bool:
    """(x - mean) / std for x in [0, 1], and the noise variance scale 1 / std^2, are finite."""
    return std * std > 0 and all(math.isfinite(v) for v in (1 / (std * std), mean / std, (1 - mean) / std))


@dataclass(frozen=True)
class Preprocessing:
    """The input statistics a model expects; each field is ``None`` when unknown.

    ``mean`` and ``std`` are per channel on pixels in [0, 1]; ``input_size`` is (C, H, W).
    ``origin`` says where the values came from (``timm pretrained_cfg``, ``module constants``,
    ``command line``, ``onnx graph``, ...), so a report can say how much to trust them.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int, int] | None = None
    test_input_size: tuple[int, int, int] | None = None
    crop_pct: float | None = None
    origin: str = "unknown"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and not (1 <= len(values) <= 4 and all(math.isfinite(v) for v in values)):
                raise UsageError(f"{name} must be 1 to 4 finite numbers (one per channel), got {values}")
        if self.std is not None and min(self.std) <= 0:
            raise UsageError(f"std must be positive, got {self.std}")
        if self.std is not None and not all(_finite_scaling(m, s) for m in self.mean or (0.0,) for s in self.std):
            raise UsageError(f"mean {self.mean} and std {self.std} overflow: (x - mean) / std and 1 / std^2 must "
                             "be finite for pixels x in [0, 1] (give values as on [0, 1] pixels)")
        if self.mean is not None and self.std is not None and 1 < len(self.mean) != len(self.std) > 1:
            raise UsageError(f"mean has {len(self.mean)} channels but std has {len(self.std)}")
        for name in ("input_size", "test_input_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 3 or min(size) <= 0):
                raise UsageError(f"{name} must be (C, H, W) with positive sizes, got {size}")
            if size is not None and (size[0] > MAX_CHANNELS or max(size[1:]) > MAX_SIDE):
                raise UsageError(f"{name} {size} is too large: at most {MAX_CHANNELS} channels and "
                                 f"{MAX_SIDE} pixels a side")

    def merged(self, override: Preprocessing) -> Preprocessing:
        """Fields set in ``override`` win; the origin says which field came from where."""
        names = ("mean", "std", "input_size", "test_input_size", "crop_pct")
        overridden = [name for name in names if getattr(override, name) is not None]
        kept = [name for name in names if name not in overridden and getattr(self, name) is not None]
        values = {name: getattr(override if name in overridden else self, name) for name in names}
        if not overridden:
            origin = self.origin
        elif not kept:
            origin = override.origin
        else:
            origin = f"{', '.join(overridden)} from {override.origin}, {', '.join(kept)} from {self.origin}"
        return Preprocessing(**values, origin=origin)


DEFAULT_INPUT_SIZE = (3, 224, 224)

TRACE_LEVELS = ("onnx", "fx", "export", "hooks", "structural")


@dataclass
class ModelGraph:
    """A model read into one graph, with what is known about how it was read.

    ``trace_level`` is one of :data:`TRACE_LEVELS`; ``coverage`` is the share of the model's
    leaf layers that appear in the graph with an output shape (1.0 for a complete trace).
    ``weights`` says whether real parameter values are available (a checkpoint, ONNX initializers);
    models built on the meta device have none. ``notes`` are plain-language caveats for the report.
    ``parameters`` maps a node id to a callable returning ``{name: numpy array}`` for that node's
    real weights (only when ``weights`` is true).
    """

    name: str
    graph: nx.DiGraph
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    trace_level: str = "fx"
    coverage: float = 1.0
    traced_input_size: tuple[int, int, int] | None = None
    weights: bool = False
    architecture: str = "unknown"  # "cnn", "vit", "hybrid" or "unknown", set by noiselint.passes
    notes: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def nodes(self, *ops: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(node id, attributes) in execution order, only of the given op kinds when any are given."""
        items = sorted(self.graph.nodes(data=True), key=lambda item: item[1].get("order", 0))
        for node_id, data in items:
            if not ops or data.get("op") in ops:
                yield node_id, data

    def node(self, node_id: str) -> dict[str, Any]:
        return self.graph.nodes[node_id]

    def predecessors(self, node_id: str) -> list[str]:
        return list(self.graph.predecessors(node_id))

    def successors(self, node_id: str) -> list[str]:
        return list(self.graph.successors(node_id))

    def input_shape(self, node_id: str) -> tuple[int, ...] | None:
        """Output shape of the first predecessor that has one: the node's input shape."""
        for pred in self.predecessors(node_id):
            shape = self.graph.nodes[pred].get("shape")
            if shape is not None:
                return shape
        return None


def add_node(
    graph: nx.DiGraph,
    node_id: str,
    op: str,
    *,
    order: int,
    attrs: dict[str, Any] | None = None,
    shape: tuple[int, ...] | None = None,
    module_path: str | None = None,
    module_type: str | None = None,
    source: SourceLocation | None = None,
) -> None:
    """Add a node with the full attribute schema, so every node has every key."""
    graph.add_node(
        node_id,
        op=op,
        attrs=dict(attrs or {}),
        shape=tuple(shape) if shape is not None else None,
        module_path=module_path,
        module_type=module_type,
        source=source,
        stem=False,
        order=order,
    )
