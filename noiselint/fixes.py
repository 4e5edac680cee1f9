"""Rewrite what a finding points at, the way ruff and torchfix do: ``--diff`` shows it, ``--fix`` applies it.

A rule offers a fix by defining ``fix(self, context)``: it looks at the calls and subscripts on the
finding's line (or, for ``fix_scope = "target"``, at the whole file of the linted target), records
replacement nodes with :meth:`FixContext.replace` and the imports they need, and returns a one-line
description, or raises :class:`FixRefused` saying why it will not. One LibCST pass per file applies
every replacement and adds the imports; formatting and comments elsewhere are kept.

Every noiselint fix changes what the model computes (that is its point), so fixes are *unsafe* in
ruff's sense: they are applied only with ``--unsafe-fixes``, and a trained model must be retrained
or fine-tuned after one. ``--fix`` checks each fixed file by linting it again in a fresh process: the
model must still build, give the same output shape, and no longer have the fixed finding; otherwise
the file is left as it was and the reason is reported. Files are replaced atomically.

    python -m noiselint.fixes probe TARGET   # what the check reads: output shapes and findings, as JSON
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noiselint.errors import NoiselintError
from noiselint.findings import Finding, ModelReport, Report

#: What the closing line of a report says about fixes.
UNSAFE_NOTE = "every fix changes the model's outputs: retrain or fine-tune after it"


class FixRefused(Exception):  # noqa: N818 - a refusal, not an error: the reason is reported
    """A rule declines to fix one finding; the message says why."""


@dataclass
class FixContext:
    """What a rule's ``fix`` sees: the parsed file, the nodes at the finding's line, and where to write."""

    module: Any  # libcst.Module
    nodes: list[Any]  # calls and subscripts starting on the finding's line, outermost first
    finding: Finding
    replacements: dict[Any, Any] = field(default_factory=dict)
    imports: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    unused: list[tuple[str, str]] = field(default_factory=list)  # (module, name) to drop if no longer used

    def calls(self) -> list[Any]:
        import libcst as cst

        return [node for node in self.nodes if isinstance(node, cst.Call)]

    def replace(self, old: Any, new: Any) -> None:
        self.replacements[old] = new

    def add_import(self, module: str, obj: str | None = None, asname: str | None = None) -> None:
        """``import module [as asname]`` or ``from module import obj`` in the fixed file."""
        self.imports.append((module, obj, asname))

    # -- helpers for the rules' fixes ------------------------------------------------------

    def callee(self, call: Any) -> str:
        """The dotted name a call calls: ``nn.MaxPool2d``, ``torch.nn.functional.max_pool2d``, ``MaxPool2d``."""
        return self.module.code_for_node(call.func)

    def renamed(self, call: Any, name: str, *, torch_module: str = "torch.nn") -> Any:
        """``call.func`` with its last name replaced by ``name`` (imported from ``torch_module`` if bare)."""
        import libcst as cst

        if isinstance(call.func, cst.Attribute):
            return call.func.with_changes(attr=cst.Name(name))
        self.add_import(torch_module, name)
        if isinstance(call.func, cst.Name):
            self.unused.append((torch_module, call.func.value))
        return cst.Name(name)

    def sibling(self, call: Any, name: str) -> Any:
        """An expression for ``torch.nn.<name>`` spelled like ``call.func`` (``nn.X`` -> ``nn.<name>``)."""
        import libcst as cst

        if isinstance(call.func, cst.Attribute) and self.callee(call).rsplit(".", 1)[0] in ("nn", "torch.nn"):
            return call.func.with_changes(attr=cst.Name(name))
        self.add_import("torch.nn", name)
        return cst.Name(name)

    def functional(self) -> Any:
        """An expression for ``torch.nn.functional`` in this file: its ``F`` alias, else a new import."""
        import libcst as cst

        for statement in self.module.body:
            for small in statement.body if isinstance(statement, cst.SimpleStatementLine) else ():
                if isinstance(small, cst.Import):
                    for alias in small.names:
                        if self.module.code_for_node(alias.name) == "torch.nn.functional" and alias.asname:
                            return cst.Name(alias.asname.name.value)
        self.add_import("torch.nn.functional", None, "F")
        return cst.Name("F")

    def argument(self, call: Any, index: int, keyword: str) -> Any:
        """The argument at ``index`` (positional) or named ``keyword``, or None."""
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == keyword:
                return arg
        positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
        return positional[index] if index < len(positional) else None

    def value(self, arg: Any, default: Any = None) -> Any:
        """The Python value of a literal argument; ``default`` when absent; FixRefused when not a literal."""
        if arg is None:
            return default
        code = self.module.code_for_node(arg.value)
        try:
            return ast.literal_eval(code)
        except (ValueError, SyntaxError):
            raise FixRefused(f"`{code}` is not a literal: fix it by hand") from None

    def with_arguments(self, call: Any, names: Sequence[str], values: dict[str, Any], *,
                       drop: Iterable[str] = ()) -> Any:
        """``call`` with arguments given by ``names`` (the signature's positional order) set from ``values``.

        Arguments keep their spelling; positional ones after a dropped one become keywords;
        ``values`` holds Python values (rendered with ``repr``) for the arguments to change or add.
        """
        import libcst as cst

        dropped = set(drop)
        kept, keyword_only = [], False
        for index, name in enumerate(names):
            arg = self.argument(call, index, name)
            if name in dropped:
                keyword_only = keyword_only or arg is not None
                continue
            if name in values:
                expression = cst.parse_expression(repr(values[name]))
                arg = (arg.with_changes(value=expression) if arg is not None
                       else cst.Arg(value=expression, keyword=cst.Name(name), equal=_equal()))
            if arg is None:
                keyword_only = True
                continue
            if keyword_only and arg.keyword is None:
                arg = arg.with_changes(keyword=cst.Name(name), equal=_equal())
            kept.append(arg)
        extra = [a for a in call.args if a.keyword is not None and a.keyword.value not in names]
        args = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in (*kept, *extra)]
        return call.with_changes(args=args)


def _equal() -> Any:
    """``=`` without spaces, as in ``ceil_mode=True``."""
    import libcst as cst

    return cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))


# --------------------------------------------------------------------------- the fixes rules offer

_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
_FUNCTIONAL_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_CONV_ARGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
              "padding_mode")


def max_to_average_pooling(context: FixContext, *, antialiased: bool = False) -> str:
    """``nn.MaxPool2d(k, s, p)`` -> ``nn.AvgPool2d(k, s, p)`` (and ``F.max_pool2d`` -> ``F.avg_pool2d``).

    Max pooling pads with -inf, so a padded average excludes the padding (``count_include_pad=False``).
    ``antialiased``: ``nn.MaxPool2d(k, s, p)`` -> ``nn.Sequential(nn.MaxPool2d(k, 1, p), BlurPool2d(stride=s))``
    (timm's blur pool, Zhang 2019), which keeps max pooling's selectivity and is shift-invariant.
    """
    for call in context.calls():
        name = context.callee(call).rsplit(".", 1)[-1]
        module = name.startswith("MaxPool") and name[-2:] in ("1d", "2d", "3d")
        functional = name in ("max_pool1d", "max_pool2d", "max_pool3d")
        if not module and not functional:
            continue
        names = _POOL_ARGS if module else _FUNCTIONAL_POOL_ARGS
        if context.value(context.argument(call, names.index("return_indices"), "return_indices"), False):
            raise FixRefused("the pooling returns indices (for unpooling): fix it by hand")
        if antialiased:
            return _blur_pooled(context, call, name)
        if _literal_not(context, call, names, "dilation", 1):
            raise FixRefused("dilated max pooling has no average-pooling equivalent: fix it by hand")
        padded = _literal_not(context, call, names, "padding", 0)
        replacement = context.with_arguments(
            call, (*names, "count_include_pad"), {"count_include_pad": False} if padded else {},
            drop=("dilation", "return_indices"))
        new_name = name.replace("MaxPool", "AvgPool").replace("max_pool", "avg_pool")
        source = "torch.nn" if module else "torch.nn.functional"
        context.replace(call, replacement.with_changes(func=context.renamed(call, new_name, torch_module=source)))
        return f"{name} -> {new_name}"
    return ""


def _blur_pooled(context: FixContext, call: Any, name: str) -> str:
    """``nn.MaxPool2d(k, s, p)`` -> ``nn.Sequential(nn.MaxPool2d(k, 1, p), BlurPool2d(stride=s))``."""
    import libcst as cst

    if name != "MaxPool2d":
        raise FixRefused(f"the anti-aliased fix is for nn.MaxPool2d modules, not {name}: set NL301's "
                         "fix_style = \"average\" or fix it by hand")
    stride_arg = context.argument(call, 1, "stride") or context.argument(call, 0, "kernel_size")
    stride = context.module.code_for_node(stride_arg.value)
    if context.value(stride_arg, None) in (1, (1, 1), [1, 1]):
        raise FixRefused("the pooling has stride 1: there is no subsampling to anti-alias")
    dense = context.with_arguments(call, _POOL_ARGS, {"stride": 1})
    blur = cst.Call(func=cst.Name("BlurPool2d"), args=[
        cst.Arg(cst.parse_expression(stride), keyword=cst.Name("stride"), equal=_equal())])
    context.add_import("timm.layers", "BlurPool2d")
    sequential = cst.Call(func=context.sibling(call, "Sequential"), args=[cst.Arg(dense), cst.Arg(blur)])
    context.replace(call, _wrapped(context, call, sequential))
    return f"stride `{stride}` moved to a BlurPool2d after a stride-1 MaxPool2d (anti-aliased max pooling)"


def global_max_to_average(context: FixContext) -> str:
    """``nn.AdaptiveMaxPool2d(o)`` -> ``nn.AdaptiveAvgPool2d(o)``, ``F.adaptive_max_pool2d`` likewise,
    ``x.amax((2, 3))`` -> ``x.mean((2, 3))``."""
    import libcst as cst

    for call in context.calls():
        name = context.callee(call).rsplit(".", 1)[-1]
        if name.startswith(("AdaptiveMaxPool", "adaptive_max_pool")):
            names = ("output_size", "return_indices") if name[0] == "A" else ("input", "output_size", "return_indices")
            if context.value(context.argument(call, names.index("return_indices"), "return_indices"), False):
                raise FixRefused("the pooling returns indices: fix it by hand")
            new_name = name.replace("Max", "Avg").replace("max", "avg")
            source = "torch.nn" if name[0] == "A" else "torch.nn.functional"
            replacement = context.with_arguments(call, names, {}, drop=("return_indices",))
            context.replace(call, replacement.with_changes(func=context.renamed(call, new_name, torch_module=source)))
            return f"{name} -> {new_name}"
        if name == "amax" and isinstance(call.func, cst.Attribute):
            context.replace(call, call.with_changes(func=call.func.with_changes(attr=cst.Name("mean"))))
            return "amax -> mean"
    return ""


def average_pool_shortcut(context: FixContext) -> str:
    """A 1x1 stride-s conv -> ``nn.Sequential(nn.AvgPool2d(s, s, ceil_mode=True, count_include_pad=False),
    <the conv at stride 1>)`` (ResNet-D); ``x[:, :, ::s, ::s]`` -> ``F.avg_pool2d(x, s, ceil_mode=True, ...)``."""
    import libcst as cst

    for node in context.nodes:
        if isinstance(node, cst.Subscript):
            step = _spatial_step(context, node)
            if step is None:
                continue
            call = cst.Call(func=cst.Attribute(value=context.functional(), attr=cst.Name("avg_pool2d")), args=[
                cst.Arg(node.value), cst.Arg(cst.parse_expression(step)),
                cst.Arg(cst.Name("True"), keyword=cst.Name("ceil_mode"), equal=_equal()),
                cst.Arg(cst.Name("False"), keyword=cst.Name("count_include_pad"), equal=_equal())])
            context.replace(node, call)
            return f"[..., ::{step}, ::{step}] slicing -> F.avg_pool2d(..., {step})"
        if not isinstance(node, cst.Call):
            continue
        name = context.callee(node)
        if name.rsplit(".", 1)[-1] == "create_model":
            return _timm_variant(context, node, "d", "ResNet-D: average-pool shortcuts")
        if name.rsplit(".", 1)[-1] != "Conv2d":
            continue
        if context.value(context.argument(node, 2, "kernel_size")) not in (1, (1, 1), [1, 1]):
            continue
        return _wrap_with_pool(context, node, before=True)
    return ""


def blur_after_stride(context: FixContext) -> str:
    """A strided conv -> ``nn.Sequential(<the conv at stride 1>, nn.AvgPool2d(s, s, ceil_mode=True, ...))``,
    as timm's ``aa_layer=nn.AvgPool2d``: the same output shape, the stride taken after a low-pass filter."""
    for call in context.calls():
        if context.callee(call).rsplit(".", 1)[-1] == "Conv2d":
            return _wrap_with_pool(context, call, before=False)
    return ""


def larger_stem_kernel(context: FixContext, kernel: int) -> str:
    """The stem conv's kernel -> ``kernel``, its padding grown by half the difference (same output shape)."""
    for call in context.calls():
        if context.callee(call).rsplit(".", 1)[-1] != "Conv2d":
            continue
        current = context.value(context.argument(call, 2, "kernel_size"))
        current = current[0] if isinstance(current, (tuple, list)) and len(set(current)) == 1 else current
        if not isinstance(current, int):
            raise FixRefused(f"kernel {current!r} is not square: fix it by hand")
        if current >= kernel or (kernel - current) % 2:
            raise FixRefused(f"a {current}x{current} kernel cannot grow to {kernel}x{kernel} keeping its output shape")
        padding = context.value(context.argument(call, 4, "padding"), 0)
        dilation = context.value(context.argument(call, 5, "dilation"), 1)
        if dilation not in (1, (1, 1), [1, 1]):
            raise FixRefused("the stem conv is dilated: fix it by hand")
        values: dict[str, Any] = {"kernel_size": kernel}
        if padding != "same":
            if not isinstance(padding, int):
                raise FixRefused(f"padding {padding!r} is not one number: fix it by hand")
            values["padding"] = padding + (kernel - current) // 2
        context.replace(call, context.with_arguments(call, _CONV_ARGS, values))
        return f"stem kernel {current}x{current} -> {kernel}x{kernel}"
    return ""


def inception_statistics(context: FixContext) -> str:
    """Module-level ``MEAN`` / ``STD`` (or a ``Normalize(mean, std)`` call) -> 0.5 per channel."""
    import libcst as cst

    changed = []
    for statement in context.module.body:
        for small in statement.body if isinstance(statement, cst.SimpleStatementLine) else ():
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target,
                                                                                         cst.Name):
                name = small.targets[0].target.value
                if name in ("MEAN", "STD"):
                    context.replace(small.value, _halves(context, small.value))
                    changed.append(name)
    for node in _walk(context.module):
        if isinstance(node, cst.Call) and context.callee(node).rsplit(".", 1)[-1] == "Normalize":
            for index, keyword in ((0, "mean"), (1, "std")):
                arg = context.argument(node, index, keyword)
                if arg is not None:
                    context.replace(arg.value, _halves(context, arg.value))
                    changed.append(f"Normalize {keyword}")
    if not changed:
        raise FixRefused("the file states no MEAN / STD constants or Normalize(...) to change")
    return f"{', '.join(changed)} -> 0.5 per channel (Inception statistics): retrain or fine-tune with them"


def _halves(context: FixContext, value: Any) -> Any:
    import libcst as cst

    current = context.value(cst.Arg(value))
    if not isinstance(current, (tuple, list)) or not all(isinstance(v, (int, float)) for v in current):
        raise FixRefused(f"`{context.module.code_for_node(value)}` is not a list of numbers: fix it by hand")
    halves = type(current)(0.5 for _ in current)
    return cst.parse_expression(repr(halves))


def _walk(node: Any):
    yield node
    for child in node.children:
        yield from _walk(child)


def _literal_not(context: FixContext, call: Any, names: Sequence[str], name: str, neutral: int) -> bool:
    value = context.value(context.argument(call, names.index(name), name), neutral)
    values = value if isinstance(value, (tuple, list)) else (value,)
    return any(v != neutral for v in values)


def _spatial_step(context: FixContext, node: Any) -> str | None:
    """The step ``s`` of ``x[:, :, ::s, ::s]`` (or ``x[..., ::s, ::s]``) when it subsamples H and W alike."""
    import libcst as cst

    elements = [e.slice for e in node.slice]
    if len(elements) < 2:
        return None
    head, tail = elements[:-2], elements[-2:]
    if not all(isinstance(e, cst.Slice) and e.lower is None and e.upper is None and e.step is not None for e in tail):
        return None
    steps = {context.module.code_for_node(e.step) for e in tail}
    full = all((isinstance(e, cst.Slice) and e.lower is None and e.upper is None and e.step is None)
               or (isinstance(e, cst.Index) and isinstance(e.value, cst.Ellipsis)) for e in head)
    return steps.pop() if len(steps) == 1 and full else None


def _wrap_with_pool(context: FixContext, conv: Any, *, before: bool) -> str:
    """``nn.Sequential`` of the conv at stride 1 and an average pool taking its stride (same output shape)."""
    import libcst as cst

    stride_arg = context.argument(conv, 3, "stride")
    if stride_arg is None:
        raise FixRefused("the conv has stride 1: nothing to move")
    stride = context.module.code_for_node(stride_arg.value)
    padding = context.value(context.argument(conv, 4, "padding"), 0)
    if before and padding not in (0, (0, 0), [0, 0]):
        raise FixRefused("the 1x1 conv is padded: fix it by hand")
    at_stride_one = context.with_arguments(conv, _CONV_ARGS, {"stride": 1})
    pool = cst.Call(func=context.sibling(conv, "AvgPool2d"), args=[
        cst.Arg(cst.parse_expression(stride)), cst.Arg(cst.parse_expression(stride)),
        cst.Arg(cst.Name("True"), keyword=cst.Name("ceil_mode"), equal=_equal()),
        cst.Arg(cst.Name("False"), keyword=cst.Name("count_include_pad"), equal=_equal())])
    layers = [pool, at_stride_one] if before else [at_stride_one, pool]
    sequential = cst.Call(func=context.sibling(conv, "Sequential"), args=[cst.Arg(layer) for layer in layers])
    context.replace(conv, _wrapped(context, conv, sequential))
    where = "before" if before else "after"
    return f"stride `{stride}` moved to an AvgPool2d {where} the conv (its weights move to index {int(before)} " \
           f"of an nn.Sequential)"


def _wrapped(context: FixContext, old: Any, call: Any, width: int = 100) -> Any:
    """``call`` with one argument per line when, in place of ``old``, its line would pass ``width``."""
    import libcst as cst

    line = context.module.code.splitlines()[context.finding.location.line - 1]
    one_line = len(line) - len(context.module.code_for_node(old)) + len(context.module.code_for_node(call))
    if one_line <= width:
        return call
    indent = len(line) - len(line.lstrip())

    def newline(spaces: int) -> Any:
        return cst.ParenthesizedWhitespace(first_line=cst.TrailingWhitespace(newline=cst.Newline()),
                                           indent=False, last_line=cst.SimpleWhitespace(" " * spaces))

    last = len(call.args) - 1
    args = [arg.with_changes(comma=cst.Comma(whitespace_after=newline(indent + 4 if i < last else indent)))
            for i, arg in enumerate(call.args)]
    return call.with_changes(args=args, whitespace_before_args=newline(indent + 4))


def _timm_variant(context: FixContext, call: Any, suffix: str, what: str) -> str:
    """``timm.create_model("resnet50", ...)`` -> ``"resnet50d"`` when timm has it (with weights, if asked)."""
    import libcst as cst

    name_arg = context.argument(call, 0, "model_name")
    name = context.value(name_arg)
    if not isinstance(name, str):
        raise FixRefused("the model name is not a string literal")
    import timm

    architecture, dot, tag = name.partition(".")
    variant = architecture + suffix
    if not timm.is_model(variant):
        raise FixRefused(f"timm has no {variant!r} ({what})")
    if context.value(context.argument(call, 1, "pretrained"), False) and not timm.list_pretrained(variant + "*"):
        raise FixRefused(f"timm has no pretrained weights for {variant!r}")
    if not isinstance(name_arg.value, cst.SimpleString):
        raise FixRefused("the model name is not a plain string literal")
    quoted = name_arg.value.value  # keep the file's quote style
    context.replace(name_arg.value, cst.SimpleString(quoted.replace(architecture, variant, 1)))
    return f"timm {name!r} -> {variant!r} ({what})"


@dataclass(frozen=True)
class Applied:
    finding: Finding
    description: str


@dataclass
class FileFix:
    """The fixes planned for one file: its text before and after, what was applied and what refused."""

    path: str
    original: str
    fixed: str
    applied: list[Applied] = field(default_factory=list)
    refused: list[tuple[Finding, str]] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)

    def diff(self) -> str:
        return "".join(difflib.unified_diff(
            self.original.splitlines(keepends=True), self.fixed.splitlines(keepends=True),
            fromfile=f"a/{self.path}", tofile=f"b/{self.path}"))


def fixable(finding: Finding, rules: dict[str, Any]) -> bool:
    """True when the finding's rule offers a fix and what it points at can be edited."""
    rule = rules.get(finding.code)
    if rule is None or not callable(getattr(rule, "fix", None)):
        return False
    return getattr(rule, "fix_scope", "line") == "target" or (
        finding.location is not None and is_user_file(finding.location.path))


def is_user_file(path: str) -> bool:
    """A regular file outside installed packages and the standard library."""
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        return False
    parts = Path(real).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return not any(real.startswith(os.path.join(os.path.realpath(r), "")) for r in roots)


def plan(report: Report, rules: dict[str, Any], *, allowed: Callable[[str], bool] = lambda code: True
         ) -> list[FileFix]:
    """The fixes for every fixable finding of ``report``, one :class:`FileFix` per file that changes."""
    by_file: dict[str, list[tuple[Finding, ModelReport]]] = {}
    for model in report.models:
        for finding in model.findings:
            if not allowed(finding.code) or not fixable(finding, rules):
                continue
            path = _fix_path(finding, model, rules[finding.code])
            if path is not None:
                by_file.setdefault(path, []).append((finding, model))
    plans = []
    for path, items in by_file.items():
        file_fix = _plan_file(path, items, rules)
        if file_fix.applied or file_fix.refused:
            plans.append(file_fix)
    return plans


def _fix_path(finding: Finding, model: ModelReport, rule: Any) -> str | None:
    if getattr(rule, "fix_scope", "line") == "target":
        from noiselint.loaders import split_python_target

        path = split_python_target(model.target)[0]
        return path if path.endswith(".py") and is_user_file(path) else None
    return finding.location.path if finding.location is not None else None


def _plan_file(path: str, items: list[tuple[Finding, ModelReport]], rules: dict[str, Any]) -> FileFix:
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    original = Path(path).read_text(encoding="utf-8")
    file_fix = FileFix(path=path, original=original, fixed=original)
    try:
        wrapper = MetadataWrapper(cst.parse_module(original))
    except cst.ParserSyntaxError as exc:
        file_fix.refused.extend((finding, f"LibCST cannot parse the file: {exc.message}") for finding, _ in items)
        return file_fix
    module = wrapper.module
    positions = wrapper.resolve(PositionProvider)
    by_line: dict[int, list[Any]] = {}
    for node, position in positions.items():
        if isinstance(node, (cst.Call, cst.Subscript)):
            by_line.setdefault(position.start.line, []).append(node)
    replacements: dict[Any, Any] = {}
    imports: list[tuple[str, str | None, str | None]] = []
    unused: list[tuple[str, str]] = []
    seen: set[tuple[str, int | None]] = set()
    for finding, model in items:
        rule = rules[finding.code]
        line = finding.location.line if finding.location is not None else None
        key = (finding.code, line if getattr(rule, "fix_scope", "line") == "line" else None)
        if key in seen:  # the same change for another model or node of the same line
            continue
        seen.add(key)
        nodes = by_line.get(line, []) if getattr(rule, "fix_scope", "line") == "line" else []
        nodes.sort(key=lambda n: (positions[n].start.column, -positions[n].end.line, -positions[n].end.column))
        context = FixContext(module=module, nodes=nodes, finding=finding)
        try:
            description = rule.fix(context)
        except FixRefused as exc:
            file_fix.refused.append((finding, str(exc)))
            continue
        if not context.replacements:
            file_fix.refused.append((finding, "nothing on that line that this fix knows how to change"))
            continue
        if set(context.replacements) & set(replacements):
            file_fix.refused.append((finding, "another fix already changes the same code"))
            continue
        replacements.update(context.replacements)
        imports.extend(context.imports)
        unused.extend(context.unused)
        file_fix.applied.append(Applied(finding, description))
        file_fix.targets.add(model.target)
    if replacements:
        file_fix.fixed = _rewrite(module, replacements, imports, unused)
    return file_fix


def _rewrite(module: Any, replacements: dict[Any, Any], imports: list, unused: list) -> str:
    import libcst as cst
    from libcst.codemod import CodemodContext
    from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor

    class Replace(cst.CSTTransformer):
        def on_leave(self, original, updated):
            return replacements.get(original, updated)

    rewritten = module.visit(Replace())
    if imports:
        context = CodemodContext()
        for name, obj, asname in dict.fromkeys(imports):
            AddImportsVisitor.add_needed_import(context, name, obj, asname)
        rewritten = AddImportsVisitor(context).transform_module(rewritten)
    if unused:
        context = CodemodContext()
        for name, obj in dict.fromkeys(unused):
            RemoveImportsVisitor.remove_unused_import(context, name, obj)
        rewritten = RemoveImportsVisitor(context).transform_module(rewritten)
    return rewritten.code


# --------------------------------------------------------------------------- applying, safely


def apply(plans: Sequence[FileFix], *, verify: bool = True) -> list[FileFix]:
    """Write every planned file atomically; with ``verify``, lint it again and undo what did not hold."""
    for file_fix in plans:
        if not file_fix.applied:
            continue
        before = {target: probe(target) for target in sorted(file_fix.targets)} if verify else {}
        _write_atomically(file_fix.path, file_fix.fixed)
        if not verify:
            continue
        problem = _check(file_fix, before)
        if problem is not None:
            _write_atomically(file_fix.path, file_fix.original)
            file_fix.refused.extend((applied.finding, problem) for applied in file_fix.applied)
            file_fix.applied = []
            file_fix.fixed = file_fix.original
    return list(plans)


def _check(file_fix: FileFix, before: dict[str, dict]) -> str | None:
    """Why the fixed file does not hold (it no longer builds, its output shape changed, the finding
    is still there), or None."""
    for target, old in before.items():
        new = probe(target)
        if new.get("error"):
            return f"after the fix the model no longer lints: {new['error']}"
        if "structural" in new.get("levels", ()) and "structural" not in old.get("levels", ()):
            return "after the fix the model's forward no longer runs (no tracing level could run it)"
        if old.get("outputs") != new.get("outputs"):
            return f"after the fix the output shape changed from {old.get('outputs')} to {new.get('outputs')}"
        remaining = {(f[0], f[1], f[2]) for f in new.get("findings", [])}
        for applied in file_fix.applied:
            finding = applied.finding
            where = finding.location
            if where is None or where.path != file_fix.path:  # a target-scope fix: the code must be gone
                if any(code == finding.code for code, _, _ in remaining):
                    return f"after the fix {finding.code} is still reported"
            elif (finding.code, where.path, where.line) in remaining:
                return f"after the fix {finding.code} is still reported at line {where.line}"
    return None


def probe(target: str) -> dict:
    """Lint ``target`` in a fresh process: its models' output shapes and findings (code, path, line)."""
    command = [sys.executable, "-m", "noiselint.fixes", "probe", target]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"error": "linting it again took more than 600 s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(lines[-1])


def _probe_main(target: str) -> dict:
    """Output shapes and findings of every model ``target`` names (model code's prints go to stderr)."""
    from noiselint.engine import Options, check_graph, make_rules, read_graph
    from noiselint.graph import Op
    from noiselint.loaders import expand, load

    rules = make_rules(Options())
    outputs, findings, levels = [], [], []
    for name in expand(target):
        for loaded in load(name):
            graph = read_graph(loaded)
            levels.append(graph.trace_level)
            outputs.append([graph.node(p)["shape"] for node_id, _ in graph.nodes(Op.OUTPUT)
                            for p in graph.predecessors(node_id)])
            report = check_graph(graph, rules, target=target)
            findings.extend((f.code, f.location.path if f.location else None, f.location.line if f.location else None)
                            for f in report.findings)
    return {"outputs": outputs, "findings": findings, "levels": levels, "error": None}


def _write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, keeping its permissions."""
    folder = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".noiselint-fix-", suffix=".py")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def rules_by_code(rules: Iterable[Any]) -> dict[str, Any]:
    return {rule.code: rule for rule in rules}


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "probe":
        raise SystemExit("usage: python -m noiselint.fixes probe TARGET")
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        answer = _probe_main(sys.argv[2])
    except NoiselintError as exc:
        answer = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the fix check reports any failure as one line
        from noiselint.errors import one_line

        answer = {"error": one_line(exc)}
    real_stdout.write(json.dumps(answer, default=list) + "\n")
    real_stdout.flush()
