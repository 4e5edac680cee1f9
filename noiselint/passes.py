"""Analyses that run once on every graph and write their results onto the nodes.

``classify_convolutions`` needs ``op`` and ``attrs``, provides ``op`` = patch_embed / subsample.
``mark_stem`` needs ``op``, ``attrs`` and edges, provides ``stem``.
``detect_architecture`` needs ``op``, provides ``ModelGraph.architecture``.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from noiselint.graph import ModelGraph, Op

# Ops that carry data through unchanged in layout for the purpose of finding the model input.
_TRANSPARENT = frozenset({Op.INPUT, Op.NORMALIZE, Op.RESHAPE, Op.OTHER, Op.RESIZE})
#: The stem ends once the total stride would exceed this (a ResNet's conv s2 + max pool s2 is 4).
STEM_MAX_STRIDE = 4


def run_all(graph: ModelGraph) -> ModelGraph:
    classify_convolutions(graph)
    mark_stem(graph)
    detect_architecture(graph)
    return graph


def stride_of(data: dict) -> int:
    """The largest spatial stride of a node (1 for ops that do not downsample)."""
    stride = data["attrs"].get("stride")
    if data["op"] not in (*Op.CONVOLUTIONS, *Op.POOLING, Op.BLUR) or not stride:
        return 1
    return max(stride) if isinstance(stride, tuple) else int(stride)


def _reaches_input(graph: ModelGraph, node_id: str, has_shapes: bool) -> bool:
    """True when the node's input comes from the model input through transparent ops only.

    Where shapes are known, only tensor-carrying edges are followed: a deep layer whose reshape
    reads the input's height and width (``H, W = x.shape[-2:]``) is not fed by the input.
    """
    return any(data["op"] == Op.INPUT for _, data in _upstream(graph, node_id, _TRANSPARENT, has_shapes))


def _upstream(graph: ModelGraph, node_id: str, through: frozenset[str], has_shapes: bool,
              limit: int | None = None) -> Iterator[tuple[str, dict]]:
    """The nodes feeding ``node_id``, nearest first, walking back only through ``through`` ops
    (with a shape where shapes are known), at most ``limit`` of them."""
    frontier, seen = list(graph.predecessors(node_id)), set()
    while frontier and (limit is None or len(seen) < limit):
        current = frontier.pop()
        if current in seen:
            continue
        seen.add(current)
        data = graph.node(current)
        yield current, data
        if data["op"] in through and (data["shape"] is not None or not has_shapes):
            frontier.extend(graph.predecessors(current))


def classify_convolutions(graph: ModelGraph) -> None:
    """Strided 1x1 convs are subsampling; a conv with kernel == stride > 1 on the input, or a linear
    layer after a patch partition of it, is a patch embed."""
    has_shapes = any(data["shape"] is not None for _, data in graph.nodes())
    for node_id, data in graph.nodes(Op.CONV):
        kernel, stride = data["attrs"].get("kernel"), data["attrs"].get("stride")
        if not kernel or not stride or data["attrs"].get("transposed"):
            continue
        if all(k == 1 for k in kernel) and max(stride) > 1:
            data["op"] = Op.SUBSAMPLE
        elif tuple(kernel) == tuple(stride) and min(kernel) > 1 and _reaches_input(graph, node_id, has_shapes):
            data["op"] = Op.PATCH_EMBED
    for node_id, data in graph.nodes(Op.LINEAR):
        patch = _patch_partition(graph, node_id, has_shapes)
        features = data["attrs"].get("in_features")
        if patch and features and features % (patch[0] * patch[1]) == 0:
            data["op"] = Op.PATCH_EMBED
            data["attrs"].update(kernel=patch, stride=patch, in_channels=features // (patch[0] * patch[1]),
                                 out_channels=data["attrs"].get("out_features"), groups=1, padding=(0, 0))


def _patch_partition(graph: ModelGraph, node_id: str, has_shapes: bool) -> tuple[int, int] | None:
    """The patch of a partition (einops ``Rearrange``, ``nn.Unfold``) that feeds a linear layer
    from the input through reshapes and norms: ``Rearrange`` + ``Linear`` is a patch embedding."""
    for current, data in _upstream(graph, node_id, _PARTITION_PATH, has_shapes, limit=8):
        patch = data["attrs"].get("patch")
        if patch and _reaches_input(graph, current, has_shapes):
            return tuple(patch)
    return None


#: Ops between a patch partition and its linear layer (reshapes, a LayerNorm).
_PARTITION_PATH = frozenset({Op.RESHAPE, Op.NORM, Op.OTHER})


def mark_stem(graph: ModelGraph) -> None:
    """Mark the stem: nodes from the input to the end of the first downsampling stage.

    Only nodes fed by the input count (constants and parameters do not). Walking in execution
    order, the stem takes every such node until, after the first downsampling, the network branches
    or merges two activations (the first block), attention or a linear layer begins, the next
    downsampling would take the total stride past :data:`STEM_MAX_STRIDE`, or a convolution follows
    once that stride is reached.
    """
    inputs = [node_id for node_id, _ in graph.nodes(Op.INPUT)]
    fed = set(inputs).union(*(nx.descendants(graph.graph, node_id) for node_id in inputs))
    total_stride = 1
    for node_id, data in graph.nodes():
        if node_id not in fed:
            continue
        op, stride = data["op"], stride_of(data)
        merges = sum(pred in fed for pred in graph.predecessors(node_id)) > 1
        if op == Op.OUTPUT or (total_stride > 1 and (merges or op in (Op.ATTENTION, Op.LINEAR))):
            break
        if total_stride > 1 and stride > 1 and total_stride * stride > STEM_MAX_STRIDE:
            break
        if total_stride >= STEM_MAX_STRIDE and op in Op.CONVOLUTIONS:
            break
        data["stem"] = True
        total_stride *= stride
        if total_stride > 1 and _branches(graph, node_id, fed):
            break


def _branches(graph: ModelGraph, node_id: str, fed: set[str]) -> bool:
    consumers = [s for s in graph.successors(node_id) if s in fed and graph.node(s)["op"] not in (Op.OTHER, Op.OUTPUT)]
    return len(consumers) > 1


def detect_architecture(graph: ModelGraph) -> None:
    """``vit``, ``hybrid`` or ``cnn`` from the ops, and from module class names for attention that
    tracing dissolved into matmuls (Swin's ``WindowAttention``)."""
    ops = {data["op"] for _, data in graph.nodes()}
    if any("Attention" in name for name in graph.metadata.get("module_types", ())):
        ops.add(Op.ATTENTION)
    if Op.PATCH_EMBED in ops and Op.ATTENTION in ops:
        graph.architecture = "vit"
    elif Op.ATTENTION in ops and ops & Op.CONVOLUTIONS:
        graph.architecture = "hybrid"
    elif ops & Op.CONVOLUTIONS:
        graph.architecture = "cnn"
