"""Pruning of the transformer families (``vit``, ``hybrid``) to a MACs or parameter budget, physically.

Two methods (``prune.criterion``):

- ``vit-slim`` (both families; ViT-Slim, as the pruning reference applies it): a sparsity training
  (:class:`SlimTrainer`) learns a soft mask per attention head dimension (multiplying q, k and v),
  per MLP hidden neuron and per embedding dimension (multiplying every write to the residual
  streams) under an L1 penalty per mask kind, and Network Slimming's L1 on every BatchNorm scale
  (the centre head's towers; the hybrid's CNN backbone). :func:`slim_to_budget` then thresholds
  all these scores to the budget: ``global`` scope keeps the best ``k`` units over all widths
  together, ``layer`` scope keeps the same fraction of every width; ``k`` is found by bisection on
  the measured cost of the pruned network. The masks are folded into the weights they scale
  (exact), so removing a unit whose mask is zero changes nothing, except an embedding dimension
  (the LayerNorms then normalise over fewer dimensions) and a BatchNorm channel (its shift is lost).
- ``torch-pruning`` (``vit``): torch-pruning's DependencyGraph over the whole ViT and group L1/L2
  magnitude importance (over convs and linear layers), pruned iteratively with the CNN's loop
  (:func:`~lighttrack_nas.compress.prune.prune_iteratively`): head dimensions (the same in every
  head, timm's head layout stays uniform) until a layer's heads are ``min_head_dim`` wide, then
  whole heads; MLP neurons; embedding dimensions; tower channels.

Removed physically (Linear/Conv/LayerNorm layers rebuilt smaller; ``model.spec()`` reads the new
widths, ``build_model(spec)`` rebuilds the pruned network): attention head dimensions (heads of
different widths; a head left empty disappears), MLP neurons, embedding dimensions (the patch
embedding or the hybrid's bottleneck, the position embeddings and the query, every LayerNorm,
q/k/v and fc1 inputs, proj and fc2 outputs, the towers' first inputs), tower channels and, in the
hybrid, the backbone channels coupled as in the ``cnn`` family (torch-pruning groups). Kept: the
predictors' 1 and 4 outputs. Minimum widths (:class:`TransformerMinWidths`) bound every width; a
budget below the network at its minimum widths raises :class:`~lighttrack_nas.compress.prune.BudgetError`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from tqdm import tqdm

from ..models.transformer import Attention, HybridTracker, Mlp, TransformerTracker, ViTTracker
from ..train.baseline import BaselineTrainer
from .prune import (ChannelGraph, MinWidths, PruneResult, Units, check_request, importance, measure,
                    prune_iteratively, require_budget)

SCOPES = ("global", "layer")
GATE_KINDS = ("attn", "mlp", "embed")
MINIMUMS = "prune.min_head_dim / min_mlp / min_embed / min_width / min_width_layers"


@dataclass(frozen=True)
class TransformerMinWidths:
    """Smallest widths a transformer tracker is pruned to: dimensions of a kept head (every
    attention keeps one head at least), MLP neurons, embedding dimensions, conv channels (``convs``)."""

    head_dim: int = 1
    mlp: int = 1
    embed: int = 1
    convs: MinWidths = MinWidths()


def gates(model: TransformerTracker) -> list[tuple[str, nn.Parameter]]:
    """``(kind, mask)`` of every ViT-Slim soft mask of ``model``, kind in :data:`GATE_KINDS`."""
    out = [("attn" if isinstance(m, Attention) else "mlp", m.gate) for m in model.gated_modules() if m.gate is not None]
    return out + ([("embed", model.embed_gate)] if model.embed_gate is not None else [])


class SlimTrainer(BaselineTrainer):
    """ViT-Slim's sparsity training: :class:`BaselineTrainer` (``bn_l1`` on the BatchNorm scales) of a
    gated network, plus ``gate_l1[kind] * sign(mask)`` added to the gradient of every soft mask."""

    def __init__(self, cfg: dict[str, Any], out_dir: str | Path, spec: Mapping[str, Any],
                 init_state: Mapping[str, torch.Tensor] | None, bn_l1: float, gate_l1: Mapping[str, float],
                 progress: bool = True):
        if not spec.get("gates"):
            raise ValueError("SlimTrainer trains a gated network: its spec needs gates: true")
        self.gate_l1 = {kind: float(gate_l1[kind]) for kind in GATE_KINDS}
        super().__init__(cfg, out_dir, spec, init_state, bn_l1=bn_l1, progress=progress)
        self.masks = [(mask, self.gate_l1[kind]) for kind, mask in gates(self.model) if self.gate_l1[kind]]

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "gate_l1": self.gate_l1}

    def _step(self) -> None:
        with torch.no_grad():
            for mask, l1 in self.masks:
                if mask.grad is not None:
                    mask.grad.add_(torch.sign(mask), alpha=l1)
        super()._step()


# ---------------------------------------------------------------------- physical surgery
def _inner_rows(attn: Attention) -> list[tuple[nn.Linear, int]]:
    """The layers producing q, k and v, with how many ``inner``-row blocks each holds."""
    return [(attn.q, 1), (attn.kv, 2)] if attn.cross else [(attn.qkv, 3)]


def _embed_writers(model: TransformerTracker) -> tuple[nn.Conv2d, tuple[str, ...]]:
    """The conv and the parameters writing the embedding's first terms into the residual streams."""
    if isinstance(model, HybridTracker):
        return model.bottleneck, ("pos_z", "pos_x", "query")
    return model.patch_embed, ("pos_z", "pos_x")


def _set_heads(attn: Attention, head_dims: list[int]) -> None:
    attn.head_dims, attn.num_heads, attn.inner = head_dims, len(head_dims), sum(head_dims)


@torch.no_grad()
def fold_gates(model: TransformerTracker) -> None:
    """Fold every soft mask into the weights it scales and drop it (exact: the network computes what
    the gated one did): attention masks into the q, k, v rows, MLP masks into fc2's columns, the
    embedding mask into every writer's rows (patch embedding/bottleneck, position embeddings, query,
    proj and fc2)."""
    for m in model.gated_modules():
        if m.gate is None:
            continue
        g = m.gate.detach()
        if isinstance(m, Attention):
            for layer, blocks in _inner_rows(m):
                layer.weight.view(blocks, m.inner, -1).mul_(g[None, :, None])
                layer.bias.view(blocks, m.inner).mul_(g)
        else:
            m.fc2.weight.mul_(g)
        m.gate = None
    if model.embed_gate is not None:
        g = model.embed_gate.detach()
        conv, params = _embed_writers(model)
        conv.weight.mul_(g.view(-1, 1, 1, 1))
        conv.bias.mul_(g)
        for name in params:
            getattr(model, name).mul_(g)
        for m in model.gated_modules():
            out = m.proj if isinstance(m, Attention) else m.fc2
            out.weight.mul_(g[:, None])
            out.bias.mul_(g)
        model.embed_gate = None


def _prune_attention(attn: Attention, removed: list[int]) -> None:
    """Remove the inner dimensions ``removed`` (of q, k and v alike); heads left empty disappear."""
    for layer, blocks in _inner_rows(attn):
        tp.prune_linear_out_channels(layer, [b * attn.inner + i for b in range(blocks) for i in removed])
    tp.prune_linear_in_channels(attn.proj, removed)
    drop = torch.zeros(attn.inner, dtype=torch.bool)
    drop[removed] = True
    _set_heads(attn, [n for part in (~drop).split(attn.head_dims) if (n := int(part.sum()))])


def _prune_mlp(mlp: Mlp, removed: list[int]) -> None:
    tp.prune_linear_out_channels(mlp.fc1, removed)
    tp.prune_linear_in_channels(mlp.fc2, removed)


def _prune_embed(model: TransformerTracker, removed: list[int]) -> None:
    """Remove the embedding dimensions ``removed`` from every layer that writes or reads them."""
    conv, params = _embed_writers(model)
    tp.prune_conv_out_channels(conv, removed)
    keep = [i for i in range(model.embed_dim) if i not in set(removed)]
    for name in params:
        setattr(model, name, nn.Parameter(getattr(model, name).data[..., keep].clone()))
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):  # every LayerNorm of these families normalises the embedding
            tp.prune_layernorm_out_channels(m, removed)
        elif isinstance(m, Attention):
            for layer, _ in _inner_rows(m):
                tp.prune_linear_in_channels(layer, removed)
            tp.prune_linear_out_channels(m.proj, removed)
        elif isinstance(m, Mlp):
            tp.prune_linear_in_channels(m.fc1, removed)
            tp.prune_linear_out_channels(m.fc2, removed)
    for tower in (model.cls_tower, model.reg_tower):
        tp.prune_conv_in_channels(tower[0][0], removed)
    model.embed_dim = len(keep)


def conv_graph(model: TransformerTracker) -> ChannelGraph:
    """The conv channels of a transformer tracker: the towers (fed from a stand-in of the
    transformer's output) and, for the hybrid, backbone -> bottleneck (whose outputs, the
    embedding, are pruned with the transformer); the predictors' outputs are kept."""
    stand_in = torch.zeros(1, model.embed_dim, model.score_size, model.score_size)
    predictors = [model.cls_tower[-1].conv, model.reg_tower[-1].conv]
    if isinstance(model, HybridTracker):
        def trace(m: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
            return [m.bottleneck(m.backbone(x)), m.cls_tower(stand_in), m.reg_tower(stand_in)]

        return ChannelGraph(model, torch.zeros(1, 3, model.search_size, model.search_size), trace,
                            [model.bottleneck, *predictors])
    return ChannelGraph(model, stand_in, lambda m, x: [m.cls_tower(x), m.reg_tower(x)], predictors)


# ---------------------------------------------------------------------- ViT-Slim thresholding
@dataclass
class _Width:
    """One prunable width: a score per unit (head dimension, neuron, embedding dimension, channel)
    and the fewest units it keeps; an attention's (``heads``: its head widths) minimum applies per
    kept head, and it keeps one head at least."""

    kind: str  # embed | attn | mlp | conv
    name: str  # module name (conv: the group's root conv)
    scores: torch.Tensor
    minimum: int
    heads: tuple[int, ...] = ()

    def keep(self, chosen: torch.Tensor) -> list[int]:
        """Sorted indices kept: the ``chosen`` units completed to the minimum widths."""
        if not self.heads:
            return _complete(self.scores, chosen, self.minimum).nonzero().flatten().tolist()
        chosen = chosen.clone()
        if not chosen.any():
            chosen[int(self.scores.argmax())] = True
        parts = [_complete(s, c, self.minimum) if c.any() else c
                 for s, c in zip(self.scores.split(self.heads), chosen.split(self.heads))]
        return torch.cat(parts).nonzero().flatten().tolist()


def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Mask of the ``count`` best ``scores`` (ties: the first)."""
    mask = torch.zeros(len(scores), dtype=torch.bool)
    mask[torch.argsort(scores, descending=True, stable=True)[:count]] = True
    return mask


def _complete(scores: torch.Tensor, chosen: torch.Tensor, minimum: int) -> torch.Tensor:
    """``chosen`` plus the best other units until ``minimum`` (at most all) are chosen."""
    missing = min(minimum, len(scores)) - int(chosen.sum())
    return chosen if missing <= 0 else chosen | _top(scores.masked_fill(chosen, -math.inf), missing)


def _widths(model: TransformerTracker, min_widths: TransformerMinWidths, scored: bool) -> list[_Width]:
    """Every prunable width of ``model``; scores: |mask| and BatchNorm |gamma| (``scored``), else ones."""
    def score(mask: nn.Parameter | None, n: int) -> torch.Tensor:
        return mask.detach().abs().cpu() if scored else torch.ones(n)

    out = [_Width("embed", "embed", score(model.embed_gate, model.embed_dim), min_widths.embed)]
    for name, m in model.named_modules():
        if isinstance(m, Attention):
            out.append(_Width("attn", name, score(m.gate, m.inner), min_widths.head_dim, tuple(m.head_dims)))
        elif isinstance(m, Mlp):
            out.append(_Width("mlp", name, score(m.gate, m.fc1.out_features), min_widths.mlp))
    scorer = importance("slimming")
    for group, name, channels, lowest in conv_graph(model).groups(min_widths.convs):
        out.append(_Width("conv", name, scorer(group).cpu() if scored else torch.ones(channels), lowest))
    return out


def _plan(widths: list[_Width], k: int, scope: str) -> dict[str, list[int]]:
    """Kept units per width: the best ``k`` of all (``global``) or the same fraction ``k / all`` of
    each (``layer``), completed to the minimum widths."""
    sizes = [len(w.scores) for w in widths]
    if scope == "global":
        masks = _top(torch.cat([w.scores for w in widths]), k).split(sizes)
    else:
        masks = [_top(w.scores, math.ceil(k * n / sum(sizes))) for w, n in zip(widths, sizes)]
    return {w.name: w.keep(m) for w, m in zip(widths, masks)}


def _apply(model: TransformerTracker, widths: list[_Width], plan: Mapping[str, list[int]]) -> None:
    """Fold the masks of ``model`` and remove every unit that ``plan`` does not keep, in place."""
    fold_gates(model)
    removed = {w.name: sorted(set(range(len(w.scores))) - set(plan[w.name])) for w in widths}
    for w in widths:
        if w.kind == "embed" and removed[w.name]:
            _prune_embed(model, removed[w.name])
        elif w.kind in ("attn", "mlp") and removed[w.name]:
            (_prune_attention if w.kind == "attn" else _prune_mlp)(model.get_submodule(w.name), removed[w.name])
    if any(removed[w.name] for w in widths if w.kind == "conv"):
        for group, name, _, _ in conv_graph(model).groups(MinWidths()):
            if removed.get(name):
                group.prune(removed[name])


def _cost(model: TransformerTracker, widths: list[_Width], plan: Mapping[str, list[int]]) -> dict[str, int]:
    trial = copy.deepcopy(model)
    _apply(trial, widths, plan)
    return measure(trial)


def smallest_cost(model: TransformerTracker, min_widths: TransformerMinWidths) -> dict[str, int]:
    """MACs/params of (a copy of) ``model`` with every width at its minimum (one head per attention)."""
    widths = _widths(model, min_widths, scored=False)
    return _cost(model, widths, _plan(widths, 0, "global"))


def check_transformer_budget(model: TransformerTracker, budget: float, kind: str,
                             min_widths: TransformerMinWidths) -> tuple[dict[str, int], dict[str, int]]:
    """(dense cost of ``model`` without masks, smallest achievable cost); raises BudgetError when
    ``budget`` cannot be met."""
    check_request(budget, kind)
    plain = copy.deepcopy(model)
    fold_gates(plain)
    dense, smallest = measure(plain), smallest_cost(plain, min_widths)
    require_budget(budget, kind, dense, smallest, MINIMUMS)
    return dense, smallest


def slim_to_budget(model: TransformerTracker, budget: float, kind: str = "macs",
                   min_widths: TransformerMinWidths = TransformerMinWidths(), scope: str = "global",
                   progress: bool = True) -> PruneResult:
    """ViT-Slim: prune gated ``model`` in place (masks folded and removed) to at most ``budget`` x
    its ``kind``, keeping the units of largest |mask| (BatchNorm |gamma| for conv channels) in
    ``scope`` (:data:`SCOPES`); ``steps`` counts the networks measured by the bisection."""
    if not model.gated:
        raise ValueError("prune.criterion 'vit-slim' ranks the ViT-Slim soft masks and this network has none: "
                         "prune the network of its sparsity training (model_spec gates: true)")
    if scope not in SCOPES:
        raise ValueError(f"prune.scope: {scope!r} is not one of {list(SCOPES)}")
    widths = _widths(model, min_widths, scored=True)
    dense, _ = check_transformer_budget(model, budget, kind, min_widths)
    costs: dict[tuple[tuple[int, ...], ...], int] = {}

    def fits(k: int) -> bool:
        plan = _plan(widths, k, scope)
        key = tuple(tuple(v) for v in plan.values())
        if key not in costs:
            costs[key] = _cost(model, widths, plan)[kind]
        return costs[key] <= budget * dense[kind]

    lo, hi = 0, sum(len(w.scores) for w in widths)  # the largest k that fits; k = 0 fits (checked)
    with tqdm(total=math.ceil(math.log2(hi + 1)), desc=f"vit-slim to {budget:g} {kind} ({scope})",
              disable=not progress, dynamic_ncols=True) as bar:
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
            bar.update(1)
    _apply(model, widths, _plan(widths, lo, scope))
    return PruneResult(dense, measure(model), len(costs))


# ---------------------------------------------------------------------- torch-pruning (vit)
def _remove_heads(attn: Attention, group: Any, slots: bool, idxs: list[int]) -> None:
    """Remove head-dimension slots ``idxs`` of every head (``slots``) or whole heads ``idxs``."""
    h, d = attn.num_heads, attn.head_dims[0]
    if slots:
        inner, dims = [i * d + j for i in range(h) for j in idxs], [d - len(idxs)] * h
    else:
        inner, dims = [i * d + j for i in idxs for j in range(d)], [d] * (h - len(idxs))
    group.prune(inner)
    _set_heads(attn, dims)


def _remove_embed(model: ViTTracker, group: Any, idxs: list[int]) -> None:
    group.prune(idxs)
    model.embed_dim -= len(idxs)


def _tp_units(model: ViTTracker, graph: tp.DependencyGraph, scorer: tp.importance.Importance,
              min_widths: TransformerMinWidths) -> list[Units]:
    """This step's units: embedding dimensions, per layer head-dimension slots (heads once they are
    ``min_head_dim`` wide) and MLP neurons, tower channels."""
    def group(module: nn.Module, fn: Any, n: int) -> Any:
        return graph.get_pruning_group(module, fn, list(range(n)))

    embed = group(model.patch_embed, tp.prune_conv_out_channels, model.embed_dim)
    units = [Units(scorer(embed), min_widths.embed, partial(_remove_embed, model, embed))]
    for i, block in enumerate(model.blocks):
        attn = block.attn
        if len(set(attn.head_dims)) != 1:
            raise ValueError(f"prune.criterion 'torch-pruning' keeps heads uniform: blocks.{i}.attn has heads of "
                             f"widths {attn.head_dims}")
        g = group(attn.proj, tp.prune_linear_in_channels, attn.inner)
        imp = scorer(g).view(attn.num_heads, attn.head_dims[0])
        slots = attn.head_dims[0] > min_widths.head_dim
        units.append(Units(imp.mean(0) if slots else imp.mean(1), min_widths.head_dim if slots else 1,
                           partial(_remove_heads, attn, g, slots)))
        g = group(block.mlp.fc1, tp.prune_linear_out_channels, block.mlp.fc1.out_features)
        units.append(Units(scorer(g), min_widths.mlp, g.prune))
    for name in ("cls_tower", "reg_tower"):
        for j, layer in enumerate(getattr(model, name)[:-1]):
            g = group(layer[0], tp.prune_conv_out_channels, layer[0].out_channels)
            units.append(Units(scorer(g), min_widths.convs(f"{name}.{j}.0"), g.prune))
    return units


def torch_prune_to_budget(model: ViTTracker, budget: float, kind: str = "macs",
                          min_widths: TransformerMinWidths = TransformerMinWidths(), norm: int = 1,
                          progress: bool = True, normalizer: str | None = None) -> PruneResult:
    """torch-pruning: prune ViT ``model`` in place (masks folded first, if any) to at most
    ``budget`` x its ``kind`` by group L``norm`` magnitude (scaled per group by ``normalizer``,
    :func:`~.prune.importance`), iteratively."""
    if not isinstance(model, ViTTracker):
        raise ValueError(f"prune.criterion 'torch-pruning' prunes family vit, not {model.spec()['family']}")
    fold_gates(model)
    dense, _ = check_transformer_budget(model, budget, kind, min_widths)
    scorer = importance("torch-pruning", norm, normalizer)
    was_training = model.training
    inputs = (torch.zeros(1, 3, model.template_size, model.template_size),
              torch.zeros(1, 3, model.search_size, model.search_size))
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=inputs, forward_fn=lambda m, x: m(*x), verbose=False,
        unwrapped_parameters=[(model.pos_z, 2), (model.pos_x, 2)])
    model.train(was_training)
    return prune_iteratively(model, budget, kind, dense, lambda: _tp_units(model, graph, scorer, min_widths),
                             progress)
