"""Block diagrams of the xr_dl4ds networks, drawn from the networks themselves.

Run:  python docs/figures/make_figures.py [--out DIR]   (default: this folder)

Each figure is made by building a real network with
:func:`xr_dl4ds.models.create_model`, running one forward pass on zeros and recording
it: the chosen submodules through forward hooks, the tensor operations between them
(concatenations, additions, poolings, interpolations, slices) through a
:class:`torch.overrides.TorchFunctionMode`. Edges follow the tensors, so the skips,
branches and concatenations drawn are those the code computes; box names are the
attribute names of the submodules in the code, channel counts and grid sizes those of
the recorded tensors, and parameter counts are summed from the modules. Only the short
description of each block type is written here, so the figures cannot drift from the
code. Runs of three or more identical blocks in a chain are drawn as one box.

Besides the SVG figures, the script writes ``parameters.md``, the parameter counts of
the reference configuration, which ``docs/architectures.md`` includes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from xr_dl4ds.models import create_model

HERE = Path(__file__).resolve().parent

#: The reference configuration of the parameter counts (that of the model-zoo benchmark):
#: one target and two static fields, i.e. 3 coarse input channels and 2 high-resolution
#: static channels, scale 4, every other option at its default (n_filters=8, n_blocks=6).
REFERENCE: dict[str, Any] = {"scale": 4, "in_channels": 3, "out_channels": 1, "static_channels": 2}
#: Side of the coarse grid of the recorded forward pass (the fine grid is ``scale`` times
#: larger). Parameter counts do not depend on it (no ``localcon`` in the reference).
COARSE = 8
#: Length of the time window of the spatio-temporal figure.
WINDOW = 3
#: Networks drawn with fewer blocks than the reference, so that every level shows.
DRAWN_OPTIONS: dict[str, dict[str, Any]] = {"unet": {"n_blocks": 3}}

BACKBONES = ("convnet", "resnet", "densenet", "convnext", "unet")
UPSAMPLINGS = ("pin", "spc", "rc", "dc")
#: Every file the script writes.
FIGURES = (
    "network_spc.svg",
    "network_pin.svg",
    "output_module.svg",
    *(f"backbone_{b}.svg" for b in BACKBONES),
    "backbone_recurrent.svg",
    *(f"upsampling_{u}.svg" for u in UPSAMPLINGS),
)
OUTPUTS = (*FIGURES, "parameters.md")


@functools.cache
def network(backbone: str, upsampling: str, **options: Any) -> nn.Module:
    """The reference network (``options`` override fields), in eval mode, cached."""
    torch.manual_seed(0)
    return create_model(backbone, upsampling=upsampling, **REFERENCE, **options).eval()


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- recording ---------------------------------------------------------------------------


@dataclasses.dataclass
class Node:
    """One box: an input, a recorded module, a tensor operation, or the output."""

    index: int
    kind: str  # "input", "module", "op" or "output"
    name: str  # attribute path of a module ("blocks[2]"), else ""
    label: str
    category: str  # colour
    inputs: list[int] = dataclasses.field(default_factory=list)
    shape: tuple[int, ...] = ()  # of the output
    in_channels: int | None = None
    params: int = 0
    run: list[Node] = dataclasses.field(default_factory=list)  # merged repetitions
    period: int = 1

    @property
    def title(self) -> str:
        return f"{self.name}: {self.label}" if self.name else self.label


def _tensors(obj: Any) -> Iterable[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


#: Operations that only rearrange a tensor (time folded into the batch, broadcasting):
#: their result belongs to the node that produced their input.
PASS_THROUGH = {"reshape", "view", "expand", "unsqueeze", "contiguous", "repeat_interleave"}


def _index(idx: Any) -> str:
    parts = []
    for i in idx if isinstance(idx, tuple) else (idx,):
        if i is Ellipsis:
            parts.append("...")
        elif isinstance(i, slice):
            part = f"{'' if i.start is None else i.start}:{'' if i.stop is None else i.stop}"
            parts.append(part + ("" if i.step is None else f":{i.step}"))
        else:
            parts.append(str(i))
    return "[" + ", ".join(parts) + "]"


def _op_label(name: str, args: tuple, kwargs: dict) -> str:
    if name == "cat":
        return "concatenate channels"
    if name in ("__add__", "__radd__", "add"):
        return "add"
    if name == "__getitem__":
        return "slice " + _index(args[1])
    if name == "interpolate":
        mode = kwargs.get("mode", "nearest")
        factor = kwargs.get("scale_factor")
        return f"{mode} interpolation ×{int(factor)}" if factor else f"{mode} resize"
    if name == "pixel_shuffle":
        factor = args[1] if len(args) > 1 else kwargs["upscale_factor"]
        return f"pixel shuffle ×{factor}"
    if name == "max_pool2d":
        return "max-pool 2×2"
    if name == "pad":
        return f"pad ({kwargs.get('mode', 'constant')})"
    return name


def _short_name(name: str) -> str:
    """``blocks.2`` -> ``blocks[2]``."""
    return re.sub(r"\.(\d+)", r"[\1]", name)


class Recorder(TorchFunctionMode):
    """Records a forward pass: hooked modules as nodes, tensor operations between them."""

    def __init__(self, root: nn.Module) -> None:
        super().__init__()
        self.names = {id(m): _short_name(n) for n, m in root.named_modules()}
        self.nodes: list[Node] = []
        self.producer: dict[int, int] = {}  # id(tensor) -> node index
        self.keep: list[Tensor] = []  # keeps recorded tensors (and so their ids) alive
        self.depth = 0  # > 0 inside a recorded module
        self.stack: list[bool] = []

    def _sources(self, objs: Any) -> tuple[list[int], int | None]:
        sources: list[int] = []
        channels = None
        for t in _tensors(objs):
            src = self.producer.get(id(t))
            if src is not None and src not in sources:
                sources.append(src)
                if channels is None and t.ndim >= 3:
                    channels = int(t.shape[-3])
        return sources, channels

    def add(self, node: Node, output: Any) -> None:
        node.index = len(self.nodes)
        self.nodes.append(node)
        out = next(iter(_tensors(output)), None)
        if out is not None:
            node.shape = tuple(out.shape)
            self.producer[id(out)] = node.index
            self.keep.append(out)

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.stack.append(self.depth == 0)
        self.depth += 1

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.depth -= 1
        if not self.stack.pop():
            return
        sources, channels = self._sources((args, kwargs))
        label, category = describe(module)
        node = Node(0, "module", self.names.get(id(module), ""), label, category, sources)
        node.in_channels, node.params = channels, n_params(module)
        self.add(node, output)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth or not isinstance(out, Tensor):
            return out
        sources, channels = self._sources((args, kwargs))
        if not sources:
            return out
        name = getattr(func, "__name__", str(func))
        if name in PASS_THROUGH:
            self.producer[id(out)] = sources[0]
            self.keep.append(out)
            return out
        node = Node(0, "op", "", _op_label(name, args, kwargs), "op", sources)
        node.in_channels = channels
        self.add(node, out)
        return out


def record(root: nn.Module, leaves: Iterable[nn.Module], inputs: dict[str, Tensor]) -> list[Node]:
    """Run ``root(*inputs)``, recording ``leaves``; the nodes in execution order."""
    rec = Recorder(root)
    for label, tensor in inputs.items():
        rec.add(Node(0, "input", "", label, "io"), tensor)
    handles = []
    for m in leaves:
        handles.append(m.register_forward_pre_hook(rec.pre_hook, with_kwargs=True))
        handles.append(m.register_forward_hook(rec.post_hook, with_kwargs=True))
    try:
        with torch.no_grad(), rec:
            out = root(*inputs.values())
    finally:
        for h in handles:
            h.remove()
    rec.add(Node(0, "output", "", "output", "io", [rec.producer[id(out)]]), out)
    return rec.nodes


def leaves_of(module: nn.Module, open_: Callable[[nn.Module], bool] = lambda m: False) -> list:
    """The submodules to record: the children of ``module``, looking inside containers
    (``Sequential``, ``ModuleList`` and those ``open_`` selects); identities (a dropout
    of rate 0, no activation) are left out."""
    out: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, nn.Identity):
            continue
        if isinstance(child, (nn.Sequential, nn.ModuleList)) or open_(child):
            out += leaves_of(child, open_)
        else:
            out.append(child)
    return out


# -- what each block type is called ----------------------------------------------------


def _is(m: nn.Module | None) -> bool:
    return m is not None and not isinstance(m, nn.Identity)


def describe(m: nn.Module) -> tuple[str, str]:
    """Short description and colour category of a module, from its class."""
    name = type(m).__name__
    if isinstance(m, nn.ConvTranspose2d):
        return (
            f"transposed conv {m.kernel_size[0]}×{m.kernel_size[0]}, stride {m.stride[0]}",
            "conv",
        )
    if isinstance(m, nn.Conv2d):
        dw = ", depthwise" if m.groups > 1 else ""
        return f"conv {m.kernel_size[0]}×{m.kernel_size[0]}{dw}", "conv"
    if name == "ConvBlock":
        extra = "".join(s for s, on in ((" + norm", _is(m.norm1)), (" + act", _is(m.act1))) if on)
        att = ", channel attention" if _is(m.attention) else ""
        return f"ConvBlock (2 × conv 3×3{extra}{att})", "block"
    if name in ("ResidualBlock", "ConvNeXtBlock"):
        skip = "1×1 conv" if _is(m.skip) else "identity"
        kind = ", depthwise 7×7" if name == "ConvNeXtBlock" else ""
        return f"{name} ({skip} skip{kind})", "block"
    if name == "DenseBlock":
        return f"DenseBlock (adds {m.conv2.out_channels})", "block"
    if name == "TransitionBlock":
        return "TransitionBlock (1×1 conv + act)", "transition"
    if name == "RecurrentConvBlock":
        return "RecurrentConvBlock (ConvLSTM 5×5, 3×3)", "block"
    if name == "DecoderUpsampling":
        return f"DecoderUpsampling (×2, {m.mode})", "upsampling"
    if name == "LocallyConnected1x1":
        return f"LocallyConnected1x1 (weights on {m.grid_shape[0]}×{m.grid_shape[1]})", "conv"
    registered = registered_names().get(type(m))
    if registered:
        return f"{name} ({registered!r})", "network"
    if isinstance(m, (nn.ReLU, nn.GELU, nn.ELU, nn.SiLU, nn.SELU, nn.LeakyReLU)):
        return name, "act"
    return name, "block"


@functools.cache
def registered_names() -> dict[type, str]:
    """The registry name of every backbone and upsampling class."""
    from xr_dl4ds.models import list_backbones, list_upsamplings
    from xr_dl4ds.models.registry import get_backbone, get_upsampling

    names = {get_backbone(b): b for b in list_backbones()}
    names.update({get_upsampling(u): u for u in list_upsamplings()})
    return names


# -- runs of identical blocks become one box ---------------------------------------------


def compact(nodes: list[Node], min_repeats: int = 3) -> list[Node]:
    """Merge ``min_repeats`` or more repetitions of one or two module types in a chain
    (each node fed only by the one before it, and feeding only the one after it)."""
    consumers: dict[int, list[int]] = {n.index: [] for n in nodes}
    for n in nodes:
        for s in n.inputs:
            consumers[s].append(n.index)

    def link(k: int) -> bool:  # nodes[k] feeds only nodes[k+1], which only it feeds
        return (
            k + 1 < len(nodes)
            and consumers[nodes[k].index] == [nodes[k + 1].index]
            and nodes[k + 1].inputs == [nodes[k].index]
        )

    def kind(n: Node) -> tuple[str, str]:
        return n.kind, n.label.split(" (")[0]

    out: list[Node] = []
    i = 0
    while i < len(nodes):
        best = (1, 0)  # (period, length)
        for period in (1, 2):
            head = nodes[i : i + period]
            if len(head) < period or any(n.kind != "module" for n in head):
                continue
            if not all(link(k) for k in range(i, i + period - 1)):
                continue
            length = period
            while (
                i + length + period <= len(nodes)
                and [kind(n) for n in nodes[i + length : i + length + period]]
                == [kind(n) for n in head]
                and all(link(k) for k in range(i + length - 1, i + length + period - 1))
            ):
                length += period
            if length // period >= min_repeats and length > best[1]:
                best = (period, length)
        period, length = best
        if not length:
            out.append(nodes[i])
            i += 1
            continue
        run = nodes[i : i + length]
        parts = [n.label.split(" (")[0] for n in run[:period]]
        reps = length // period
        label = f"{reps} × {parts[0]}" if period == 1 else f"{reps} × ({', '.join(parts)})"
        name = re.sub(r"\[\d+\]$", "", run[0].name)
        if any(re.sub(r"\[\d+\]$", "", n.name) != name for n in run):
            name = ""
        merged = dataclasses.replace(
            run[-1],
            name=name,
            label=label,
            category=run[0].category,
            inputs=list(run[0].inputs),
            in_channels=run[0].in_channels,
            params=sum(n.params for n in run),
            run=run,
            period=period,
        )
        out.append(merged)
        i += length
    return out


# -- drawing -----------------------------------------------------------------------------

COLOURS = {
    "io": "#ffffff",
    "conv": "#d6e6f5",
    "block": "#d4eed1",
    "transition": "#fbf0c4",
    "upsampling": "#fbd9c0",
    "network": "#e6dcf2",
    "act": "#ececec",
    "op": "#f4f4f4",
}


def detail(n: Node, grids: bool) -> str:
    """The second line of a box: channels, grid size, parameters."""
    bits = []
    if len(n.shape) >= 3:
        c, h, w = n.shape[-3:]
        if n.run:
            widths = [m.shape[-3] for m in n.run][n.period - 1 :: n.period]
            bits.append(f"{n.in_channels} → {', '.join(map(str, widths))} ch")
        elif n.in_channels not in (None, c):
            bits.append(f"{n.in_channels} → {c} ch")
        else:
            bits.append(f"{c} ch")
        where = {COARSE: " coarse", COARSE * REFERENCE["scale"]: " fine"}.get(h, "")
        bits.append(f"{h}×{w}{where if grids else ''}")
    if n.kind == "module" and n.params:
        bits.append(f"{n.params:,} parameters")
    return " | ".join(bits)


def draw(
    nodes: list[Node], title: str, path: Path, *, lanes: str = "main", grids: bool = True
) -> None:
    """Draw the graph top to bottom, one row per node, and save it to ``path``.

    ``lanes="main"`` puts the longest path from the first input to the output in one
    column and the other nodes beside it; ``"level"`` shifts each node by its resolution
    level (the U of an encoder-decoder). Edges between consecutive rows are straight,
    the others run beside the boxes.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state is touched
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    # each input goes just above its first consumer
    order = [n for n in nodes if n.kind != "input"]
    for n in reversed([n for n in nodes if n.kind == "input"]):
        first = next((k for k, m in enumerate(order) if n.index in m.inputs), 0)
        order.insert(first, n)
    row = {n.index: r for r, n in enumerate(order)}
    by_index = {n.index: n for n in order}

    if lanes == "level":
        top = order[0].shape[-1]
        lane = {
            n.index: (top // n.shape[-1]).bit_length() - 1 if len(n.shape) >= 3 else 0
            for n in order
        }
    else:  # the longest path from the first input to the output is lane 0
        best: dict[int, tuple[int, int | None]] = {}
        for n in order:
            if n.kind == "input":
                best[n.index] = (1 if n is nodes[0] else -(10**6), None)
                continue
            best[n.index] = max([(best[s][0] + 1, s) for s in n.inputs], default=(-(10**6), None))
        main: set[int] = set()
        cur: int | None = order[-1].index
        while cur is not None:
            main.add(cur)
            cur = best[cur][1]
        lane = {n.index: 0 if n.index in main else 1 for n in order}

    char = 0.064  # inches per character at 7 pt, with room for wider fallback fonts
    texts = {n.index: (n.title, detail(n, grids)) for n in order}
    box_w = 0.35 + char * max(max(len(t[0]), len(t[1])) for t in texts.values())
    ops = [max(len(t[0]), len(t[1])) for k, t in texts.items() if by_index[k].kind == "op"]
    op_w = 0.35 + char * max(ops, default=10)
    dx = 0.4 * box_w if lanes == "main" else 0.32
    row_h, box_h, top_margin, side = 0.5, 0.37, 0.5, 0.55
    width = box_w + dx * max(lane.values()) + 2 * side
    height = top_margin + row_h * len(order) + 0.1

    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(width / 2, 0.27, title, ha="center", va="center", fontsize=8, fontweight="bold")

    def geom(n: Node) -> tuple[float, float, float]:
        w = op_w if n.kind == "op" else box_w
        x = side + box_w / 2 + dx * lane[n.index]
        return x, top_margin + row_h * (row[n.index] + 0.5), w

    for n in order:
        x, y, w = geom(n)
        style = "square,pad=0" if n.kind == "module" else "round,pad=0,rounding_size=0.1"
        box = FancyBboxPatch(
            (x - w / 2, y - box_h / 2),
            w,
            box_h,
            boxstyle=style,
            lw=0.7,
            facecolor=COLOURS[n.category],
            edgecolor="#444444",
        )
        ax.add_patch(box)
        first, second = texts[n.index]
        ax.text(x, y - 0.07, first, ha="center", va="center", fontsize=7)
        ax.text(x, y + 0.095, second, ha="center", va="center", fontsize=6, color="#555555")

    arrow = {"arrowstyle": "-|>", "mutation_scale": 7, "lw": 0.7, "color": "#333333"}
    buses: list[tuple[int, int, int]] = []  # side, first row, last row
    for n in order:
        for s in n.inputs:
            (xs, ys, ws), (xt, yt, wt) = geom(by_index[s]), geom(n)
            r0, r1 = row[s], row[n.index]
            if r1 == r0 + 1:
                ax.add_patch(FancyArrowPatch((xs, ys + box_h / 2), (xt, yt - box_h / 2), **arrow))
                continue
            span = [geom(m) for m in order if r0 <= row[m.index] <= r1]
            left = min(x - w / 2 for x, _, w in span) - 0.12
            right = max(x + w / 2 for x, _, w in span) + 0.12
            to_left = (xs - ws / 2 - left) + (xt - wt / 2 - left)
            to_right = (right - xs - ws / 2) + (right - xt - wt / 2)
            d = -1 if to_left < to_right else 1
            busy = sum(1 for b, a, c in buses if b == d and a < r1 and r0 < c)
            bus = (left if d < 0 else right) + d * 0.09 * busy
            buses.append((d, r0, r1))
            pts = [(xs + d * ws / 2, ys), (bus, ys), (bus, yt), (xt + d * wt / 2, yt)]
            ax.plot(*zip(*pts[:-1], strict=True), color="#333333", lw=0.7)
            ax.add_patch(FancyArrowPatch(pts[-2], pts[-1], **arrow))

    path.parent.mkdir(parents=True, exist_ok=True)
    svg = path.suffix == ".svg"
    # text stays text (small, searchable files); fixed ids and no date: reproducible
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "xr_dl4ds"}):
        fig.savefig(path, metadata={"Date": None, "Creator": None} if svg else None)


# -- the figures -------------------------------------------------------------------------


def _coarse(channels: int) -> Tensor:
    return torch.zeros(1, channels, COARSE, COARSE)


def _fine(channels: int) -> Tensor:
    return torch.zeros(1, channels, COARSE * REFERENCE["scale"], COARSE * REFERENCE["scale"])


def _static() -> dict[str, Tensor]:
    return {"high-res static fields": _fine(REFERENCE["static_channels"])}


def network_graph(backbone: str, upsampling: str) -> list[Node]:
    """A whole DownscalingNet: backbone and upsampling as one box each, the output
    module open."""
    net = network(backbone, upsampling)
    leaves = [net.backbone, net.upsampling, *leaves_of(net.output), net.output_activation]
    inputs = {"coarse input x": _coarse(REFERENCE["in_channels"]), **_static()}
    return record(net, [m for m in leaves if _is(m)], inputs)


def output_graph() -> tuple[list[Node], nn.Module]:
    """The output module with both optional parts: localized convolution, static branch."""
    fine = COARSE * REFERENCE["scale"]
    out = network("resnet", "spc", localcon=True, grid_shape=(fine, fine)).output
    leaves = leaves_of(out, lambda m: type(m).__name__ == "LocalizedConvBlock")
    width = network("resnet", "spc").upsampling.out_channels
    return record(out, leaves, {"upsampled features": _fine(width), **_static()}), out


def backbone_graph(name: str) -> tuple[list[Node], nn.Module]:
    net = network(name, "pin" if name == "unet" else "spc", **DRAWN_OPTIONS.get(name, {}))
    c = REFERENCE["in_channels"]
    inputs = {"input, interpolated": _fine(c)} if net.is_pre else {"coarse input": _coarse(c)}
    return record(net.backbone, leaves_of(net.backbone), inputs), net.backbone


def recurrent_graph() -> tuple[list[Node], nn.Module]:
    net = network("resnet", "spc", time_window=WINDOW)
    leaves = [
        *leaves_of(net.backbone),
        net.upsampling,
        net.static_branch,
        net.localized,
        net.transition,
        net.refine,
        net.final,
        net.output_activation,
    ]
    x = torch.zeros(1, WINDOW, REFERENCE["in_channels"], COARSE, COARSE)
    inputs = {f"coarse input x, {WINDOW} time steps": x, **_static()}
    return record(net, [m for m in leaves if _is(m)], inputs), net


def upsampling_graph(name: str) -> tuple[list[Node], nn.Module]:
    """The upsampling of the reference network (resnet; unet for pin)."""
    net = network("unet" if name == "pin" else "resnet", name)
    up = net.upsampling
    width = REFERENCE["in_channels"] if net.is_pre else net.backbone.out_channels
    label = "coarse input x" if net.is_pre else "backbone features"
    leaves = leaves_of(up, lambda m: type(m).__name__ == "_PixelShuffleStage")
    return record(up, leaves, {label: _coarse(width)}), up


def main(out: Path = HERE) -> list[Path]:
    """Write every figure and ``parameters.md`` into ``out``; return their paths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost time
    try:
        return _main(Path(out))
    finally:
        torch.set_num_threads(threads)


def _main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, int, str, int]] = []

    for backbone, up in (("resnet", "spc"), ("unet", "pin")):
        total = n_params(network(backbone, up))
        draw(
            network_graph(backbone, up),
            f"{backbone} + {up}: {total:,} parameters",
            out / f"network_{up}.svg",
        )
        rows.append((f"network_{up}.svg", "whole network", total, f"{backbone} + {up}", total))

    nodes, module = output_graph()
    fine = COARSE * REFERENCE["scale"]
    title = f"output module, localcon=True on a {fine}×{fine} grid: {n_params(module):,} parameters"
    draw(nodes, title, out / "output_module.svg")
    plain = network("resnet", "spc").output
    rows.append(
        (
            "output_module.svg",
            "output module, without localcon",
            n_params(plain),
            "resnet + spc",
            n_params(network("resnet", "spc")),
        )
    )

    for name in BACKBONES:
        nodes, drawn = backbone_graph(name)
        options = DRAWN_OPTIONS.get(name, {})
        config = ", ".join(f"{k}={v}" for k, v in options.items()) or "reference configuration"
        title = f"{name} backbone ({config}): {n_params(drawn):,} parameters"
        draw(
            compact(nodes),
            title,
            out / f"backbone_{name}.svg",
            lanes="level" if name == "unet" else "main",
            grids=False,
        )
        up = "pin" if name == "unet" else "spc"
        full = network(name, up)
        rows.append(
            (
                f"backbone_{name}.svg",
                "backbone",
                n_params(full.backbone),
                f"{name} + {up}",
                n_params(full),
            )
        )

    nodes, net = recurrent_graph()
    title = f"resnet + spc, time_window={WINDOW}: {n_params(net):,} parameters"
    draw(compact(nodes), title, out / "backbone_recurrent.svg")
    rows.append(
        (
            "backbone_recurrent.svg",
            "recurrent backbone",
            n_params(net.backbone),
            f"resnet + spc, time_window={WINDOW}",
            n_params(net),
        )
    )

    for name in UPSAMPLINGS:
        nodes, up = upsampling_graph(name)
        draw(
            nodes,
            f"{name} upsampling, ×{REFERENCE['scale']}: {n_params(up):,} parameters",
            out / f"upsampling_{name}.svg",
        )
        backbone = "unet" if name == "pin" else "resnet"
        rows.append(
            (
                f"upsampling_{name}.svg",
                "upsampling",
                n_params(up),
                f"{backbone} + {name}",
                n_params(network(backbone, name)),
            )
        )

    lines = [
        "% written by docs/figures/make_figures.py; do not edit",
        "",
        "| figure | part | parameters of the part | network | parameters of the network |",
        "|---|---|---:|---|---:|",
        *(f"| `{f}` | {p} | {a:,} | {n} | {b:,} |" for f, p, a, n, b in rows),
    ]
    (out / "parameters.md").write_text("\n".join(lines) + "\n")
    return [out / f for f in OUTPUTS]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    for p in main(parser.parse_args().out):
        print(f"{p}  {p.stat().st_size / 1024:.0f} KiB")
