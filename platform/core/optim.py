"""Optimisation helpers shared by every trainer: layer-wise learning-rate decay for timm ViTs (BEiT: block i trains
at base_lr × decay^(depth - i)) and the check that training has not diverged."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any


class TrainingDiverged(ValueError):
    """The loss stopped being a finite number; the message names the step and what to lower."""


def finite_loss(loss: float, step: int, remedy: str) -> float:
    """`loss` when finite; else TrainingDiverged, so that no diverged model is saved or registered."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"training diverged: the loss became {loss} at step {step}; {remedy}")
    return loss


EMBEDDING_PARAMETERS = ("patch_embed", "cls_token", "pos_embed", "reg_token")
NoDecayRule = Callable[[str, Any], bool]


def vit_layer_id(name: str, depth: int) -> int:
    """Depth of a timm ViT parameter: 0 for the embeddings, i + 1 for block i, depth + 1 for the rest (norm, head)."""
    if name.startswith(EMBEDDING_PARAMETERS):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_lr_scale(layer: int, depth: int, decay: float) -> float:
    """Learning-rate multiplier of a layer: decay^(depth + 1 - layer), 1 for the layers after the last block."""
    return decay ** (depth + 1 - layer)


def biases_norms_and(names: Iterable[str] = ()) -> NoDecayRule:
    """No weight decay for 1-D parameters (biases, norms) and for parameters whose name contains one of `names`."""
    keys = tuple(names)

    def rule(name: str, parameter: Any) -> bool:
        return parameter.ndim == 1 or name.endswith(".bias") or any(key in name for key in keys)

    return rule


def layer_decay_groups(named_parameters: Iterable[tuple[str, Any]], depth: int, base_lr: float, decay: float,
                       weight_decay: float, no_weight_decay: NoDecayRule | None = None) -> list[dict]:
    """Optimizer parameter groups of a timm ViT's trainable parameters, by layer (shallow first): each with its
    decayed `lr` and `weight_decay` (0 for parameters `no_weight_decay` names; by default every one decays)."""
    groups: dict[tuple[int, bool], list] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        exempt = no_weight_decay is not None and no_weight_decay(name, parameter)
        groups.setdefault((vit_layer_id(name, depth), exempt), []).append(parameter)
    return [{"params": params, "lr": base_lr * layer_lr_scale(layer, depth, decay),
             "weight_decay": 0.0 if exempt else weight_decay}
            for (layer, exempt), params in sorted(groups.items())]
