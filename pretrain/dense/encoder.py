"""A small ResNet-like encoder of Lab frames at stride 4 or 8, plus an optional Lab-colour skip.

Stem conv (stride 2) then stages of basic residual blocks (He et al., 2016), each halving the
resolution and doubling the width, as in the ResNet-18 trunks of CRW / MAST but thinner so that it
trains on a CPU. `features()` returns unit-norm features; with `skip_weight` w > 0 the learned
features and the frame's own Lab cells are each L2-normalised and concatenated as (√(1-w)·learned,
√w·colour), so that a cosine similarity is (1 - w)·cos(learned) + w·cos(colour). With `dropout_views`
(meant for an encoder trained with one Lab channel zeroed in every input, which never saw a full-colour
frame) the learned features are the normalised mean of those of the three inputs with one channel zeroed.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segloop.pretrain.dense.colour import lab_cells


class EncoderConfigError(ValueError):
    """An encoder configuration that cannot be built; the message names the field."""


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of the dense encoder and how its features are fused with colour at inference."""

    stride: int = 8
    width: int = 32
    blocks: int = 2
    dim: int = 64
    skip_weight: float = 0.0
    skip_cells: int = 2
    dropout_views: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.stride in (4, 8), "stride", "must be 4 or 8"),
            (self.width >= 4, "width", "must be >= 4"),
            (self.blocks >= 1, "blocks", "must be >= 1"),
            (self.dim >= 4, "dim", "must be >= 4"),
            (0.0 <= self.skip_weight <= 1.0, "skip_weight", "must be in [0, 1]"),
            (self.skip_cells >= 1 and self.stride % self.skip_cells == 0, "skip_cells",
             "must be >= 1 and divide the stride"),
            (isinstance(self.dropout_views, bool), "dropout_views", "must be true or false"),
        ]
        for ok, name, reason in checks:
            if not ok:
                raise EncoderConfigError(f"dense encoder {name}={getattr(self, name)!r}: {reason}")

    def as_dict(self) -> dict:
        """Plain dict (saved with the weights)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> EncoderConfig:
        """An EncoderConfig from a dict; unknown keys raise an error naming `source`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EncoderConfigError(f"{source}: unknown dense encoder key(s) {unknown} (known: {sorted(known)})")
        return cls(**values)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 strided) shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


class DenseEncoder(nn.Module):
    """Lab frames (B, 3, H, W) -> features (B, dim, H/stride, W/stride)."""

    def __init__(self, config: EncoderConfig | None = None):
        super().__init__()
        self.config = config or EncoderConfig()
        width, blocks = self.config.width, self.config.blocks
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages, channels = [], width
        for _ in range(int(math.log2(self.config.stride)) - 1):
            layers = [BasicBlock(channels, channels * 2, stride=2)]
            layers += [BasicBlock(channels * 2, channels * 2) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            channels *= 2
        self.stages = nn.Sequential(*stages)
        self.project = nn.Conv2d(channels, self.config.dim, 1)

    @property
    def stride(self) -> int:
        """Pixels per feature cell."""
        return self.config.stride

    def forward(self, lab: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) features of normalised Lab input."""
        if lab.dim() != 4 or lab.shape[1] != 3:
            raise ValueError(f"DenseEncoder: expected Lab input (B, 3, H, W), got {tuple(lab.shape)}")
        height, width = lab.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"DenseEncoder: input {height}x{width} is not a multiple of the stride {self.stride}")
        lab = lab.contiguous(memory_format=torch.channels_last)  # NHWC convolutions: ~1.4x faster on CPU
        return self.project(self.stages(self.stem(lab)))

    def learned_features(self, lab: torch.Tensor) -> torch.Tensor:
        """Unit-norm learned features; with `dropout_views`, the mean over the three one-channel-dropped inputs."""
        if not self.config.dropout_views:
            return F.normalize(self(lab), dim=1)
        return self.dropout_view_features(lab)

    def dropout_view_features(self, lab: torch.Tensor) -> torch.Tensor:
        """Normalised mean of the unit-norm features of the three inputs with one Lab channel zeroed."""
        keep = 1.0 - torch.eye(3, dtype=lab.dtype, device=lab.device)
        total = sum(F.normalize(self(lab * keep[channel].view(1, 3, 1, 1)), dim=1) for channel in range(3))
        return F.normalize(total, dim=1)  # one view at a time: a 3x batch is 2-4x slower on CPU

    def features(self, lab: torch.Tensor, skip_weight: float | None = None) -> torch.Tensor:
        """Unit-norm inference features: learned features fused with the Lab cells by `skip_weight`."""
        weight = self.config.skip_weight if skip_weight is None else float(skip_weight)
        learned = self.learned_features(lab)
        if weight <= 0:
            return learned
        colour = lab_cells(lab, self.stride, self.config.skip_cells)
        colour = F.normalize(torch.cat([colour, torch.ones_like(colour[:, :1])], dim=1), dim=1)
        if weight >= 1:
            return colour
        return torch.cat([math.sqrt(1.0 - weight) * learned, math.sqrt(weight) * colour], dim=1)


def inference_copy(encoder: DenseEncoder) -> DenseEncoder:
    """A frozen eval-mode copy of `encoder` with every batch norm folded into the convolution before it.

    Same features within float rounding, one pass less over each activation map: at 480p, where a batch's
    maps no longer fit in the cache, features take 22 instead of 29 ms a frame on the reference CPU.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(encoder).eval()
    fused.stem[0], fused.stem[1] = fuse_conv_bn_eval(fused.stem[0], fused.stem[1]), nn.Identity()
    for block in (module for module in fused.modules() if isinstance(module, BasicBlock)):
        block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
        if isinstance(block.shortcut, nn.Sequential):
            block.shortcut = fuse_conv_bn_eval(block.shortcut[0], block.shortcut[1])
    return fused.requires_grad_(False)
