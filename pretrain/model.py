"""Student/teacher self-distillation model: DINO + iBOT + KoLeo on multi-crop views, contrastive
random walk on clips.

Follows the split of facebookresearch/dinov2's `SSLMetaArch` ("DINOv2", Oquab et al., 2023): the
teacher is an exponential moving average of the student ("Bootstrap Your Own Latent", Grill et
al., 2020; DINO, Caron et al., 2021), the student sees masked global views (iBOT, Zhou et al.,
2022) and local views, and the random walk (Jabri et al., 2020) shapes patch tokens for temporal
correspondence. Every loss term is computed in its own method and can be switched off by weight 0.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from segloop.platform.core.optim import biases_norms_and, layer_lr_scale, vit_layer_id
from segloop.pretrain.backbones import create_backbone, patch_size
from segloop.pretrain.config import DENSE_LAYOUT, ConfigError, DenseConfig, PretrainConfig, dense_encoder_on
from segloop.pretrain.dense.colour import uint8_rgb_to_lab
from segloop.pretrain.dense.encoder import DenseEncoder, EncoderConfig
from segloop.pretrain.dense.objective import frame_group_loss
from segloop.pretrain.heads import DINOHead
from segloop.pretrain.losses import DINOLoss, IBOTPatchLoss, KoLeoLoss, random_walk_loss

NO_WEIGHT_DECAY = ("pos_embed", "cls_token", "reg_token", "mask_token")
no_weight_decay = biases_norms_and(NO_WEIGHT_DECAY)


def forward_tokens(backbone: nn.Module, images: torch.Tensor, masks: torch.Tensor | None = None,
                   mask_token: torch.Tensor | None = None) -> torch.Tensor:
    """All output tokens (B, prefix + h*w, C) of a timm ViT, masked patches replaced by mask_token."""
    x = backbone.patch_embed(images)
    if masks is not None and mask_token is not None:
        shaped = masks.reshape(x.shape[:-1]) if x.dim() == 4 else masks.flatten(1)
        x = torch.where(shaped.unsqueeze(-1), mask_token.to(x.dtype), x)
    x = backbone._pos_embed(x)
    x = backbone.patch_drop(x)
    x = backbone.norm_pre(x)
    x = backbone.blocks(x)
    return backbone.norm(x)


def check_sizes(config: PretrainConfig, patch: int) -> None:
    """Raise ConfigError unless every crop size is a multiple of the backbone's patch size."""
    for key in ("global_size", "local_size", "clip_size"):
        value = getattr(config.data, key)
        if value % patch:
            raise ConfigError(f"data.{key}: {value} px is not a multiple of the patch size {patch} "
                              f"of {config.model.backbone}")


@dataclass
class Views:
    """A batch of views as tensors on the training device."""

    global_crops: torch.Tensor
    masks: torch.Tensor
    local_crops: torch.Tensor | None = None
    clip: torch.Tensor | None = None
    pair: torch.Tensor | None = None

    @classmethod
    def from_batch(cls, batch: dict, device: torch.device) -> Views:
        """Views from a collated batch dict."""
        def move(key: str) -> torch.Tensor | None:
            value = batch.get(key)
            return None if value is None else value.to(device, non_blocking=True)

        return cls(move("global"), move("masks"), move("local"), move("clip"), move("pair"))


def encoder_config(dense: DenseConfig) -> EncoderConfig:
    """The dense encoder's architecture from the run config's dense section."""
    layout = {name: getattr(dense, name) for name in DENSE_LAYOUT}
    return EncoderConfig(**layout, skip_weight=dense.skip_weight, dropout_views=dense.inference_views)


def pair_lab(pair: torch.Tensor) -> torch.Tensor:
    """(B*T, 3, S, S) normalised Lab of (B, T, 3, S, S) uint8 RGB frame groups."""
    return uint8_rgb_to_lab(pair.flatten(0, 1))


def image_terms_active(config: PretrainConfig) -> bool:
    """True when any ViT image term (DINO, iBOT, KoLeo) has a positive weight."""
    loss = config.loss
    return loss.dino_weight > 0 or loss.ibot_weight > 0 or loss.koleo_weight > 0


class SSLModel(nn.Module):
    """Student (backbone, head, mask token), EMA teacher (backbone, head) and the loss modules."""

    def __init__(self, config: PretrainConfig, init_weights: str | None = None):
        super().__init__()
        self.config = config
        backbone = create_backbone(config.model.backbone, weights=init_weights,
                                   drop_path_rate=config.model.drop_path_rate)
        self.patch = patch_size(backbone)
        check_sizes(config, self.patch)
        self.prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 1))
        dim = int(backbone.embed_dim)
        head = DINOHead(dim, config.model.head_out_dim, config.model.head_hidden_dim,
                        config.model.head_bottleneck_dim, config.model.head_layers)
        self.student = nn.ModuleDict({"backbone": backbone, "head": head})
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.teacher = copy.deepcopy(self.student)
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        loss = config.loss
        self.dino_loss = DINOLoss(config.model.head_out_dim, loss.student_temp, loss.center_momentum)
        self.ibot_loss = IBOTPatchLoss(config.model.head_out_dim, loss.student_temp, loss.center_momentum)
        self.koleo_loss = KoLeoLoss()
        self._tokens = torch.compile(forward_tokens) if config.model.compile else forward_tokens
        self.dense = DenseEncoder(encoder_config(config.dense)) if dense_encoder_on(config.dense.weight) else None

    def tokens(self, module: nn.ModuleDict, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Output tokens of the student or teacher backbone."""
        return self._tokens(module["backbone"], images, masks, self.mask_token if masks is not None else None)

    @torch.no_grad()
    def teacher_targets(self, views: Views, teacher_temp: float) -> dict:
        """Teacher logits and probabilities for the CLS tokens and the masked patches of the global views."""
        tokens = self.tokens(self.teacher, views.global_crops)
        cls_logits = self.teacher["head"](tokens[:, 0])
        method = self.config.loss.centering
        out = {"cls_logits": cls_logits,
               "cls_probs": self.dino_loss.teacher_probs(cls_logits, teacher_temp, method).chunk(2)}
        if self.config.loss.ibot_weight > 0:
            patches = tokens[:, self.prefix_tokens:]
            patch_logits = self.teacher["head"](patches[views.masks.flatten(1)])
            out["patch_logits"] = patch_logits
            out["patch_probs"] = self.ibot_loss.teacher_probs(patch_logits, teacher_temp, method)
        return out

    def image_losses(self, views: Views, targets: dict) -> dict[str, torch.Tensor]:
        """DINO (global + local views), iBOT (masked patches) and KoLeo (student CLS) terms."""
        weights = self.config.loss
        use_masks = weights.ibot_weight > 0
        tokens = self.tokens(self.student, views.global_crops, views.masks if use_masks else None)
        cls = tokens[:, 0]
        losses: dict[str, torch.Tensor] = {}
        if weights.dino_weight > 0:
            student_logits = list(self.student["head"](cls).chunk(2))
            if views.local_crops is not None:
                local_cls = self.tokens(self.student, views.local_crops)[:, 0]
                student_logits += list(self.student["head"](local_cls).chunk(self.config.data.num_local_crops))
            losses["dino"] = self.dino_loss(student_logits, list(targets["cls_probs"]))
        if use_masks:
            masked = tokens[:, self.prefix_tokens:][views.masks.flatten(1)]
            losses["ibot"] = self.ibot_loss(self.student["head"](masked), targets["patch_probs"], views.masks)
        if weights.koleo_weight > 0:
            losses["koleo"] = sum(self.koleo_loss(chunk) for chunk in cls.chunk(2))
        return losses

    def clip_loss(self, clip: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Contrastive random walk over the student's patch tokens of a (B, T, 3, S, S) clip."""
        batch, frames = clip.shape[:2]
        tokens = self.tokens(self.student, clip.flatten(0, 1))[:, self.prefix_tokens:]
        features = tokens.reshape(batch, frames, tokens.shape[1], tokens.shape[2])
        loss = self.config.loss
        return random_walk_loss(features, loss.random_walk_temp, loss.random_walk_edge_dropout, generator)

    def dense_loss(self, pair: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Colour-reconstruction loss of the dense encoder on (B, T, 3, S, S) uint8 RGB frame groups."""
        lab = pair_lab(pair).unflatten(0, pair.shape[:2])
        return frame_group_loss(self.dense, lab, self.config.dense, generator)

    def forward(self, views: Views, teacher_temp: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted total loss and each term's value; updates the teacher centres."""
        weights = self.config.loss
        targets, losses = None, {}
        if image_terms_active(self.config):
            targets = self.teacher_targets(views, teacher_temp)
            losses = self.image_losses(views, targets)
        if weights.random_walk_weight > 0 and views.clip is not None:
            losses["random_walk"] = self.clip_loss(views.clip, generator)
        if self.dense is not None and views.pair is not None:
            losses["dense"] = self.dense_loss(views.pair, generator)
        scale = {"dino": weights.dino_weight, "ibot": weights.ibot_weight, "koleo": weights.koleo_weight,
                 "random_walk": weights.random_walk_weight, "dense": self.config.dense.weight}
        total = sum(scale[name] * value for name, value in losses.items())
        if not isinstance(total, torch.Tensor):
            raise ValueError("every loss term is switched off: set at least one loss.*_weight or dense.weight > 0")
        if weights.centering == "centering" and targets is not None:
            self.dino_loss.update_center(targets["cls_logits"])
            if "patch_logits" in targets:
                self.ibot_loss.update_center(targets["patch_logits"])
        return total, {name: float(value.detach()) for name, value in losses.items()}

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
        teacher = list(self.teacher.parameters())
        student = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(teacher, momentum)
        torch._foreach_add_(teacher, student, alpha=1 - momentum)


def layer_id(name: str, num_layers: int) -> int:
    """Depth of a student parameter: 0 for embeddings and the mask token, i+1 for block i, num_layers+1 for the rest."""
    if name == "mask_token":
        return 0
    if name.startswith("backbone."):
        return vit_layer_id(name[len("backbone."):], num_layers)
    return num_layers + 1


def param_groups(model: SSLModel, layer_decay: float | None) -> list[dict]:
    """Student parameters grouped by (lr multiplier, weight-decay multiplier, prototype layer)."""
    num_layers = len(model.student["backbone"].blocks)
    named = [(f"{n}", p) for n, p in model.student.named_parameters()] + [("mask_token", model.mask_token)]
    groups: dict[tuple, dict] = {}
    for name, parameter in named:
        if not parameter.requires_grad:
            continue
        lr_mult = 1.0 if layer_decay is None else layer_lr_scale(layer_id(name, num_layers), num_layers, layer_decay)
        no_decay = no_weight_decay(name, parameter)
        key = (lr_mult, 0.0 if no_decay else 1.0, "last_layer" in name)
        group = groups.setdefault(key, {"params": [], "lr_mult": key[0], "wd_mult": key[1], "last_layer": key[2]})
        group["params"].append(parameter)
    if model.dense is not None:
        lr_mult = model.config.dense.lr / model.config.optim.lr
        for parameter in model.dense.parameters():
            key = ("dense", 0.0 if parameter.ndim == 1 else 1.0)
            group = groups.setdefault(key, {"params": [], "lr_mult": lr_mult, "wd_mult": key[1], "last_layer": False,
                                            "dense": True})
            group["params"].append(parameter)
    return list(groups.values())
