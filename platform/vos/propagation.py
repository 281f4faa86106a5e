"""Semi-supervised video object segmentation by label propagation over patch-feature affinities.

The protocol is the one DINO uses on DAVIS (Caron et al. 2021, after Jabri et al. 2020): every
frame is resized so that its short side is `short_side` (the long side rounded down to a multiple
of 64), cut into patches and embedded (ViT patch tokens, or raw Lab colour patches for the pixel
baseline). The soft labels of a target frame are a weighted vote of context patches: context =
the annotated keyframes (kept for the whole pass) + the last `n_last` propagated frames; for each
target patch only context patches within a `radius`-patch window are eligible, the `topk` most
similar (cosine) over all context frames are kept and weighted by softmax(similarity /
`temperature`). Soft labels are upsampled bilinearly to the original resolution, each channel is
min-max normalised (DINO's `norm_mask`), and the argmax is the mask.

Keyframes may be anywhere: each frame between two keyframes a < b gets a forward pass from a and a
backward pass from b, merged as (b - t)/(b - a) · forward + (t - a)/(b - a) · backward; frames
before the first (after the last) keyframe get only a backward (forward) pass. Per frame we return
a confidence record: mean max-probability (over all pixels and over predicted-foreground pixels)
and the disagreement between the forward and backward pass (1 - mean IoU of their object masks at
patch resolution; 0 when one pass only).

Memory is bounded by the context size, a query chunk, and a feature cache budget: nothing scales
with frames × frames. Everything here is a pure function of (frames, keyframe masks); frames are
any indexable sequence of H×W×3 uint8 RGB arrays (a (T, H, W, 3) array or `FrameFolder`).
"""
from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from segloop.platform.core import image as core_image
from segloop.platform.core.device import resolve_device
from segloop.platform.core.image import imagenet_normalise
from segloop.platform.core.masks import object_ious

COPY = "copy"
DENSE_ENCODER_FILE = "dense_encoder.pth"
TEACHER_FILE = "teacher_backbone.pth"
QUERY_TILE = 8  # query cells per tile edge of the windowed top-k: 8 ran 2-4x faster than 16 on CPU (same result)
LOGIT_CHUNK_BYTES = 8 * 2**20  # logits scored at once (11 tiles against a keyframe and 7 recent frames): kept in cache
WINDOW_PENALTY = 1e4  # × the largest |query|·|key|: logit offset keeping out-of-window candidates out of the top-k
TEMPERATURE_RANGE = (1e-3, 1e3)  # softmax temperatures that keep logits and the penalty finite in float32


class PropagationError(ValueError):
    """Frames, keyframes or settings that cannot be propagated; the message says which and why."""


@dataclass(frozen=True)
class PropagationConfig:
    """Label-propagation settings; defaults are DINO's DAVIS protocol."""

    short_side: int = 480
    size_multiple: int = 64
    n_last: int = 7
    topk: int = 5
    radius: int = 12
    recent_radius: int | None = 4
    temperature: float = 0.1
    max_keyframes_in_context: int = 4
    normalize_channels: bool = True
    label_downsample: str = "nearest"
    batch_size: int = 4
    query_chunk: int = 1024
    feature_cache_mb: int = 512

    def __post_init__(self) -> None:
        checks = {
            "short_side": self.short_side >= 16,
            "size_multiple": self.size_multiple >= 1,
            "n_last": self.n_last >= 0,
            "recent_radius": self.recent_radius is None or self.recent_radius >= 0,
            "topk": self.topk >= 1,
            "temperature": TEMPERATURE_RANGE[0] <= self.temperature <= TEMPERATURE_RANGE[1],
            "max_keyframes_in_context": self.max_keyframes_in_context >= 1,
            "label_downsample": self.label_downsample in ("nearest", "area"),
            "batch_size": self.batch_size >= 1,
            "query_chunk": self.query_chunk >= 1,
            "feature_cache_mb": self.feature_cache_mb >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            settings = ", ".join(f"{b}={getattr(self, b)!r}" for b in bad)
            raise PropagationError(f"invalid propagation setting(s): {settings}")

    def recent_window(self) -> int:
        """Window radius for the recent frames: `recent_radius`, never wider than the keyframes' `radius`."""
        if self.recent_radius is None:
            return self.radius
        if self.radius <= 0:
            return self.recent_radius
        return self.radius if self.recent_radius <= 0 else min(self.recent_radius, self.radius)

    def as_dict(self) -> dict:
        """The settings as a plain dict (for confidence.json and benchmarks)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


class FrameFolder(Sequence):
    """Lazily read RGB frames (H×W×3 uint8) from image files, checking they all have one size."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise PropagationError("no frame files given")
        self.size = self._read(0).shape[:2]

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int) -> np.ndarray:
        """RGB array of one frame file; errors name the file."""
        return core_image.read_rgb(self.paths[index], error=PropagationError)

    def __getitem__(self, index: int) -> np.ndarray:
        image = self._read(index)
        if image.shape[:2] != self.size:
            raise PropagationError(
                f"{self.paths[index]}: size {image.shape[1]}x{image.shape[0]} differs from the first frame's "
                f"{self.size[1]}x{self.size[0]}"
            )
        return image


# --------------------------------------------------------------------------------------------
# Featurizers: frames (B, H, W, 3) uint8 -> L2-normalised patch features (B, h*w, C)
# --------------------------------------------------------------------------------------------


class Featurizer:
    """Base class: resizes frames to the working size and embeds them into unit-norm patch features."""

    name = "featurizer"
    patch = 16

    def __init__(self, config: PropagationConfig, device: str = "cpu") -> None:
        self.config = config
        self.device = device

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (h, w) of a frame of the given original size."""
        new_h, new_w = core_image.working_size(height, width, self.config.short_side, self.patch, rounding="floor",
                                               long_multiple=self.config.size_multiple, error=PropagationError)
        return new_h // self.patch, new_w // self.patch

    def resize(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames resized to the working size (B, h·p, w·p, 3), uint8."""
        import cv2

        height, width = frames[0].shape[:2]
        grid_h, grid_w = self.grid(height, width)
        size = (grid_w * self.patch, grid_h * self.patch)
        return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_LINEAR) for f in frames])

    def __call__(self, frames: Sequence[np.ndarray]):
        """Unit-norm patch features (B, h*w, C), float32 torch tensor on `self.device`."""
        raise NotImplementedError


class ViTFeaturizer(Featurizer):
    """Last-layer patch tokens of a timm ViT (ImageNet normalisation; bf16 autocast on GPU)."""

    def __init__(self, model, config: PropagationConfig, device: str = "cpu", name: str = "vit") -> None:
        from segloop.pretrain.backbones import patch_size

        super().__init__(config, device)
        self.model = model.eval().to(device)
        self.patch = patch_size(model)
        self.name = name

    def __call__(self, frames: Sequence[np.ndarray]):
        import torch
        import torch.nn.functional as F

        from segloop.pretrain.backbones import patch_tokens

        images = imagenet_normalise(self.resize(frames), self.device)
        use_bf16 = str(self.device).startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            tokens = patch_tokens(self.model, images)
        tokens = tokens.float().reshape(tokens.shape[0], -1, tokens.shape[-1])
        return F.normalize(tokens, dim=-1)



class DenseFeaturizer(Featurizer):
    """Features of segloop's dense correspondence encoder (pretrained by `segloop pretrain`), at its stride."""

    def __init__(self, encoder, config: PropagationConfig, device: str = "cpu", name: str = "dense") -> None:
        from segloop.pretrain.dense import inference_copy

        super().__init__(config, device)
        self.encoder = inference_copy(encoder).to(device)
        self.patch = int(encoder.stride)
        self.name = name

    def __call__(self, frames: Sequence[np.ndarray]):
        from segloop.pretrain.dense import dense_features

        features = dense_features(self.encoder, self.resize(frames), batch_size=self.config.batch_size)
        return features.flatten(2).transpose(1, 2).contiguous()


class PixelFeaturizer(Featurizer):
    """Raw-pixel baseline: each patch's CIE-Lab colours, centred and scaled, flattened (+ a constant).

    Each patch is first area-averaged to `cells` × `cells` colours (default 4: 48 dims; on the DAVIS
    sample this scored J&F 0.500 vs 0.415 with all 16 × 16 pixels, and propagates faster);
    `cells=None` keeps every pixel of the patch.
    """

    name = "pixels"

    def __init__(self, config: PropagationConfig, device: str = "cpu", patch: int = 16, cells: int | None = 4) -> None:
        super().__init__(config, device)
        self.patch = patch
        self.cells = patch if cells is None else min(int(cells), patch)
        if self.cells < 1:
            raise PropagationError(f"pixel cells must be ≥ 1, got {cells}")

    def __call__(self, frames: Sequence[np.ndarray]):
        import cv2
        import torch
        import torch.nn.functional as F

        resized = self.resize(frames)
        grid_h, grid_w = resized.shape[1] // self.patch, resized.shape[2] // self.patch
        p = self.cells
        lab = np.stack([
            cv2.resize(cv2.cvtColor(f.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab), (grid_w * p, grid_h * p),
                       interpolation=cv2.INTER_AREA)
            for f in resized
        ])
        lab = (lab - np.array([50.0, 0.0, 0.0], dtype=np.float32)) / 50.0
        batch, height, width, _ = lab.shape
        patches = lab.reshape(batch, height // p, p, width // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(batch, (height // p) * (width // p), p * p * 3)
        bias = np.ones((*patches.shape[:2], 1), dtype=np.float32)
        features = torch.from_numpy(np.concatenate([patches, bias], axis=-1)).to(self.device)
        return F.normalize(features, dim=-1)


def make_featurizer(
    method: str = "backbone",
    backbone: str | None = None,
    checkpoint: str | Path | None = None,
    config: PropagationConfig | None = None,
    device: str = "auto",
    pixel_patch: int = 16,
    pixel_cells: int | None = 4,
):
    """A featurizer for 'backbone' (a pretrain run folder, or a timm ViT at random init / `checkpoint` weights),
    'dense' (a run folder's dense encoder), 'pixels', or COPY for 'copy'.

    Weights of a pretrain run are built as the backbone the run recorded; `backbone` names the model otherwise.

    With method 'backbone' and a run folder holding a dense encoder, the dense encoder is used (the
    pretraining's correspondence features); a run folder without one gives its teacher ViT.
    """
    config = config or PropagationConfig()
    if method == "copy":
        return COPY
    device = resolve_device(device)
    if method == "pixels":
        return PixelFeaturizer(config, device, pixel_patch, pixel_cells)
    if method not in ("backbone", "dense"):
        raise PropagationError(f"unknown method {method!r} (backbone|dense|pixels|copy)")
    run_dir = Path(checkpoint) if checkpoint is not None and Path(checkpoint).is_dir() else None
    if run_dir is not None and (method == "dense" or (run_dir / DENSE_ENCODER_FILE).is_file()):
        from segloop.pretrain.dense import load_dense_encoder

        try:
            encoder = load_dense_encoder(run_dir, device=device)
        except ValueError as exc:
            raise PropagationError(str(exc)) from None
        return DenseFeaturizer(encoder, config, device, name=f"dense ({run_dir.name})")
    if method == "dense":
        raise PropagationError("method 'dense' needs --checkpoint RUN_DIR, a `segloop pretrain --out` folder")
    from segloop.pretrain.backbones import backbone_for, create_backbone

    weights = checkpoint
    if run_dir is not None:
        weights = run_dir / TEACHER_FILE
        if not weights.is_file():
            raise PropagationError(f"{run_dir}: neither {DENSE_ENCODER_FILE} nor {TEACHER_FILE} in this folder "
                                   "(expected a `segloop pretrain --out` folder)")
    backbone = backbone_for(weights, backbone)
    model = create_backbone(backbone, weights=weights)
    label = f"{backbone}" + (f" ({Path(weights).parent.name}/{Path(weights).name})" if weights else " (random init)")
    return ViTFeaturizer(model, config, device, name=label)


def encoder_source(weights: str | Path | None) -> Path | None:
    """What a pretrain run's weights stand for in propagation: its run folder when it holds a dense encoder."""
    if weights is None:
        return None
    weights = Path(weights)
    return weights.parent if weights.is_file() and (weights.parent / DENSE_ENCODER_FILE).is_file() else weights


# --------------------------------------------------------------------------------------------
# Propagation core
# --------------------------------------------------------------------------------------------


def window_mask(grid_h: int, grid_w: int, radius: int, device="cpu"):
    """(h*w, h*w) bool: key cell within `radius` cells (Chebyshev) of the query cell; None if radius ≤ 0.

    The reference for tests: production propagation uses `local_topk_labels`, which never builds this.
    """
    import torch

    if radius <= 0:
        return None
    rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w)
    cols = torch.arange(grid_w, device=device).repeat(grid_h)
    near_rows = (rows[:, None] - rows[None, :]).abs() <= radius
    near_cols = (cols[:, None] - cols[None, :]).abs() <= radius
    return near_rows & near_cols


def propagate_labels(query, keys, key_labels, config: PropagationConfig, window=None):
    """Soft labels (Q, L) of query features (Q, C) voted by the top-k context patches.

    `keys` (M, Q, C) and `key_labels` (M, Q, L) are the context frames' features and soft labels on
    the same patch grid as the query; `window` (Q, Q) bool restricts each query to nearby keys.
    """
    import torch

    num_context, num_patches, _ = keys.shape
    flat_keys = keys.reshape(num_context * num_patches, -1)
    flat_labels = key_labels.reshape(num_context * num_patches, -1)
    k = min(config.topk, flat_keys.shape[0])
    out = torch.empty(query.shape[0], flat_labels.shape[1], device=query.device, dtype=flat_labels.dtype)
    for start in range(0, query.shape[0], config.query_chunk):
        stop = min(start + config.query_chunk, query.shape[0])
        logits = (query[start:stop] @ flat_keys.T) / config.temperature
        if window is not None:
            allowed = window[start:stop].repeat(1, num_context)
            logits.masked_fill_(~allowed, float("-inf"))
        values, index = logits.topk(k, dim=1)
        weights = torch.softmax(values, dim=1)
        out[start:stop] = torch.einsum("qk,qkl->ql", weights, flat_labels[index])
    return out


def _halo_blocks(maps, tile: int, radius: int):
    """(B, D, H, W) maps -> (B, tiles, D, (tile + 2·radius)²): the zero-padded neighbourhood of each query tile."""
    import torch.nn.functional as F

    batch, depth, height, width = maps.shape
    halo = tile + 2 * radius
    padded = F.pad(maps, (radius, radius + (-width % tile), radius, radius + (-height % tile)))
    return F.unfold(padded, halo, stride=tile).view(batch, depth, halo * halo, -1).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class WindowBlocks:
    """Context frames cut into the key windows of each query tile: computed once per frame, reused per query.

    After the C feature channels each key has 1 + 2·tile penalty channels (`_penalty_channels`): -1 where the
    candidate is outside the frame or outside the window of a query row / column of the tile, else 0. The
    query side (`_query_tiles`) carries the matching weights, so one matrix product gives every logit with
    its window already applied: no mask is built, stored or applied per query.
    """

    keys: object  # (tiles, C + 1 + 2·tile, M·halo²)
    labels: object  # (tiles, M·halo², L)
    key_norm: float  # largest key feature norm (sizes the penalty so that it outweighs any similarity)


@functools.lru_cache(maxsize=16)
def _penalty_channels(grid: tuple[int, int], radius: int, tile: int, device) -> object:
    """(tiles, 1 + 2·tile, halo²): -1 for halo cells outside the frame, then outside the window of each
    query row of the tile, then of each query column; 0 elsewhere."""
    import torch

    halo = tile + 2 * radius
    inside = torch.ones(1, 1, *grid, device=device)
    out_of_frame = _halo_blocks(inside, tile, radius)[0] - 1  # (tiles, 1, halo²)
    rows = torch.arange(tile, device=device)
    offsets = torch.arange(halo, device=device) - radius
    far = -((offsets[None, :] - rows[:, None]).abs() > radius).float()  # (tile, halo): query row/col vs halo row/col
    far_rows = far[:, :, None].expand(tile, halo, halo).reshape(tile, halo * halo)
    far_cols = far[:, None, :].expand(tile, halo, halo).reshape(tile, halo * halo)
    window = torch.cat([far_rows, far_cols])[None].expand(out_of_frame.shape[0], -1, -1)
    return torch.cat([out_of_frame, window], 1).contiguous()


def window_blocks(keys, key_labels, grid: tuple[int, int], radius: int, tile: int = QUERY_TILE) -> WindowBlocks:
    """The window blocks of context frames (keys (M, Q, C), soft labels (M, Q, L)) for queries on `grid`."""
    grid_h, grid_w = grid
    num_context, _, channels = keys.shape
    depth = key_labels.shape[-1]
    tile = _tile_size(grid, tile)
    radius = min(int(radius), max(grid_h, grid_w)) if radius and radius > 0 else max(grid_h, grid_w)  # beyond: same
    key_maps = keys.permute(0, 2, 1).reshape(num_context, channels, grid_h, grid_w)
    label_maps = key_labels.permute(0, 2, 1).reshape(num_context, depth, grid_h, grid_w)
    halos = _halo_blocks(key_maps, tile, radius)  # (M, tiles, C, halo²)
    penalty = _penalty_channels(grid, radius, tile, keys.device)
    tiles, halo_cells = halos.shape[1], halos.shape[3]
    block_keys = keys.new_empty(tiles, channels + penalty.shape[1], num_context, halo_cells)
    block_keys[:, :channels] = halos.permute(1, 2, 0, 3)
    block_keys[:, channels:] = penalty[:, :, None]
    return WindowBlocks(
        block_keys.view(tiles, -1, num_context * halo_cells),
        _halo_blocks(label_maps, tile, radius).permute(1, 0, 3, 2).reshape(tiles, -1, depth),
        float(keys.norm(dim=-1).max()) if keys.numel() else 0.0,
    )


class RecentBlocks:
    """The window blocks of the last `size` propagated frames side by side in one buffer (oldest overwritten), so a
    query scores all of them with one matrix product and one top-k."""

    def __init__(self, size: int) -> None:
        self.size, self.count, self.next = size, 0, 0
        self.buffer: WindowBlocks | None = None
        self.key_norm = 0.0

    def push(self, block: WindowBlocks) -> None:
        """Add the newest frame's block, replacing the oldest when full."""
        width = block.keys.shape[2]
        if self.buffer is None:
            keys, labels, total = block.keys, block.labels, width * self.size
            self.buffer = WindowBlocks(keys.new_zeros(*keys.shape[:2], total),
                                       labels.new_zeros(labels.shape[0], total, labels.shape[2]), 0.0)
        at = slice(self.next * width, (self.next + 1) * width)
        self.buffer.keys[:, :, at] = block.keys
        self.buffer.labels[:, at] = block.labels
        self.key_norm = max(self.key_norm, block.key_norm)
        self.next = (self.next + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def blocks(self) -> list[WindowBlocks]:
        """The kept frames as one block (none before the first push)."""
        if self.buffer is None:
            return []
        width = self.buffer.keys.shape[2] // self.size * self.count
        return [WindowBlocks(self.buffer.keys[:, :, :width], self.buffer.labels[:, :width], self.key_norm)]


def _tile_size(grid: tuple[int, int], tile: int) -> int:
    """The query tile edge actually used on a grid."""
    return max(1, min(tile, grid[0], grid[1]))


def _query_tiles(query, grid: tuple[int, int], tile: int, temperature: float, penalty: float):
    """(tiles, tile², C + 1 + 2·tile): query features / temperature, then the weights of the keys' penalty
    channels (the out-of-frame channel, a one-hot of the query's row and of its column, each × penalty)."""
    import torch
    import torch.nn.functional as F

    grid_h, grid_w = grid
    channels = query.shape[1]
    query_map = F.pad(query.T.reshape(1, channels, grid_h, grid_w), (0, -grid_w % tile, 0, -grid_h % tile))
    tiles = F.unfold(query_map, tile, stride=tile).view(channels, tile * tile, -1).permute(2, 1, 0)
    out = query.new_empty(tiles.shape[0], tile * tile, channels + 1 + 2 * tile)
    out[:, :, :channels] = tiles
    out[:, :, :channels] /= temperature
    rows = torch.arange(tile, device=query.device).repeat_interleave(tile)
    columns = rows.view(tile, tile).T.reshape(-1)
    weights = torch.cat([torch.ones(tile * tile, 1, device=query.device), F.one_hot(rows, tile).float(),
                         F.one_hot(columns, tile).float()], 1)
    out[:, :, channels:] = weights * (penalty / temperature)
    return out


def topk_from_blocks(query, blocks: WindowBlocks | Sequence[WindowBlocks], grid: tuple[int, int], topk: int,
                     temperature: float, tile: int = QUERY_TILE):
    """Soft labels (Q, L) of query features (Q, C): softmax-weighted vote of the top-k candidates in each window.

    With several blocks (one per context frame or group) each block's own top-k is taken first and the
    final top-k is chosen among those: the same result as one top-k over all candidates, without
    concatenating every frame's candidates. Tiles are scored `_tile_chunk` at a time so that their logits
    stay in cache between the matrix product and the top-k.
    """
    import torch
    import torch.nn.functional as F

    blocks = [blocks] if isinstance(blocks, WindowBlocks) else list(blocks)
    grid_h, grid_w = grid
    depth = blocks[0].labels.shape[-1]
    tile = _tile_size(grid, tile)
    scale = float(query.norm(dim=1).max()) * max(block.key_norm for block in blocks)
    query_tiles = _query_tiles(query, grid, tile, temperature, WINDOW_PENALTY * max(1.0, scale))
    chunk = _tile_chunk(tile, sum(block.keys.shape[2] for block in blocks))
    out = []
    for start in range(0, query_tiles.shape[0], chunk):
        at = slice(start, start + chunk)
        values, labels = [], []
        for block in blocks:
            logits = torch.bmm(query_tiles[at], block.keys[at])
            top, index = logits.topk(min(topk, logits.shape[2]), dim=2)
            values.append(top)
            labels.append(torch.gather(block.labels[at], 1, index.reshape(index.shape[0], -1, 1).expand(-1, -1, depth))
                          .view(*index.shape, depth))
        values, labels = torch.cat(values, 2), torch.cat(labels, 2)
        if values.shape[2] > topk:
            values, index = values.topk(topk, dim=2)
            labels = torch.gather(labels, 2, index.unsqueeze(-1).expand(-1, -1, -1, depth))
        out.append((torch.softmax(values, dim=2).unsqueeze(-1) * labels).sum(2))
    out = torch.cat(out)
    pad_h, pad_w = -grid_h % tile, -grid_w % tile
    out = F.fold(out.permute(2, 1, 0).reshape(1, depth * tile * tile, -1), (grid_h + pad_h, grid_w + pad_w), tile,
                 stride=tile)
    return out[0, :, :grid_h, :grid_w].reshape(depth, -1).T


def _tile_chunk(tile: int, candidates: int) -> int:
    """Query tiles scored together: their logits (tile² × candidates floats each) fit in LOGIT_CHUNK_BYTES."""
    return max(1, LOGIT_CHUNK_BYTES // (4 * tile * tile * max(candidates, 1)))


def local_topk_labels(query, groups, grid: tuple[int, int], topk: int, temperature: float, tile: int = QUERY_TILE):
    """Soft labels (Q, L) of query features (Q, C) voted by the top-k context cells inside each query's window.

    `groups` is a list of (keys (M, Q, C), soft labels (M, Q, L), radius in cells) on the query's grid
    (h, w); each group has its own window radius (e.g. wide for keyframes, narrow for the last frames).
    Queries are processed tile by tile against their halo of keys only: cost linear in the number of
    cells, no (h·w)² affinity. Equals `propagate_labels` with `window_mask` (tested). Propagation
    itself keeps each context frame's `window_blocks` and calls `topk_from_blocks`.
    """
    blocks = [window_blocks(keys, labels, grid, radius, tile) for keys, labels, radius in groups if keys.shape[0]]
    return topk_from_blocks(query, blocks, grid, topk, temperature, tile)


def keyframe_soft_labels(mask: np.ndarray, labels: Sequence[int], grid: tuple[int, int],
                         mode: str = "nearest") -> np.ndarray:
    """One-hot soft labels (h*w, L) of a label map on the patch grid ('nearest' centre sample or 'area' average)."""
    import cv2

    grid_h, grid_w = grid
    height, width = mask.shape
    lookup = np.zeros(256, dtype=np.int64)
    lookup[np.asarray(labels)] = np.arange(len(labels))
    if mode == "nearest":
        rows = np.minimum(((np.arange(grid_h) + 0.5) * height / grid_h).astype(np.int64), height - 1)
        cols = np.minimum(((np.arange(grid_w) + 0.5) * width / grid_w).astype(np.int64), width - 1)
        small = lookup[mask[np.ix_(rows, cols)]]
        return np.eye(len(labels), dtype=np.float32)[small.reshape(-1)]
    onehot = np.eye(len(labels), dtype=np.float32)[lookup[mask]]
    channels = [cv2.resize(onehot[..., c], (grid_w, grid_h), interpolation=cv2.INTER_AREA) for c in range(len(labels))]
    return np.stack(channels, axis=-1).reshape(grid_h * grid_w, len(labels))


def soft_to_mask(soft, grid: tuple[int, int], size: tuple[int, int], labels: Sequence[int], normalize: bool):
    """(label map H×W uint8, per-pixel max probability H×W) from patch-grid soft labels (h*w, L)."""
    import torch
    import torch.nn.functional as F

    grid_h, grid_w = grid
    probs = soft.T.reshape(1, -1, grid_h, grid_w).float()
    probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)[0]
    max_prob = probs.max(dim=0).values
    scores = probs
    if normalize:
        low = probs.amin(dim=(1, 2), keepdim=True)
        high = probs.amax(dim=(1, 2), keepdim=True)
        scaled = (probs - low) / (high - low).clamp_min(1e-12)
        scores = torch.where(high > 0, scaled, probs)
    index = scores.max(dim=0).indices.cpu().numpy()  # = argmax(dim=0), first max on ties; ~20x faster on CPU
    return np.asarray(labels, dtype=np.uint8)[index], max_prob.cpu().numpy()


def pass_disagreement(forward: np.ndarray, backward: np.ndarray, background: int = 0) -> float:
    """1 - mean IoU over objects present in either of two label maps (0 when both are background)."""
    ious = object_ious(forward, backward, exclude=(background,))
    return float(1.0 - np.mean(list(ious.values()))) if ious else 0.0


def frame_confidence(mask: np.ndarray, max_prob: np.ndarray, disagreement: float, passes: int, keyframe: bool) -> dict:
    """The per-frame confidence record returned with each mask."""
    foreground = mask != 0
    return {
        "keyframe": keyframe,
        "passes": passes,
        "mean_max_prob": float(max_prob.mean()),
        "fg_mean_max_prob": float(max_prob[foreground].mean()) if foreground.any() else None,
        "fg_fraction": float(foreground.mean()),
        "disagreement": float(disagreement),
    }


@dataclass
class FrameResult:
    """One propagated frame: its index, label map (original size) and confidence record."""

    index: int
    mask: np.ndarray
    confidence: dict


@dataclass
class PropagationResult:
    """Masks (T, H, W) uint8 of every frame and one confidence record per frame."""

    masks: np.ndarray
    confidences: list[dict]


class _FeatureStore:
    """Batched feature extraction in a given frame order, with a byte-bounded cache."""

    def __init__(self, frames: Sequence[np.ndarray], featurizer: Featurizer, config: PropagationConfig) -> None:
        self.frames = frames
        self.featurizer = featurizer
        self.batch_size = config.batch_size
        self.budget = config.feature_cache_mb * 2**20
        self.cache: dict[int, object] = {}
        self.pinned: dict[int, object] = {}
        self.cached_bytes = 0

    def pin(self, index: int):
        """Features of a frame kept for the whole video (keyframes)."""
        if index not in self.pinned:
            self.pinned[index] = self.featurizer([self.frames[index]])[0]
        return self.pinned[index]

    def clear(self) -> None:
        """Drop the (non-pinned) cache."""
        self.cache.clear()
        self.cached_bytes = 0

    def iterate(self, indices: Sequence[int]) -> Iterator[tuple[int, object]]:
        """(index, features (h*w, C)) in the given order, computing missing ones `batch_size` at a time."""
        position = 0
        while position < len(indices):
            index = indices[position]
            known = self.pinned.get(index, self.cache.get(index))
            if known is not None:
                yield index, known
                position += 1
                continue
            batch = []
            while position + len(batch) < len(indices) and len(batch) < self.batch_size:
                candidate = indices[position + len(batch)]
                if candidate in self.cache or candidate in self.pinned:
                    break
                batch.append(candidate)
            features = self.featurizer([self.frames[i] for i in batch])
            for offset, frame_index in enumerate(batch):
                feature = features[offset]
                size = feature.numel() * feature.element_size()
                if self.cached_bytes + size <= self.budget:
                    self.cache[frame_index] = feature
                    self.cached_bytes += size
                yield frame_index, feature
            position += len(batch)


def _validate(frames: Sequence[np.ndarray], keyframe_masks: dict[int, np.ndarray]) -> tuple[int, tuple[int, int]]:
    """(number of frames, (H, W)) after checking keyframe indices and mask sizes."""
    count = len(frames)
    if count == 0:
        raise PropagationError("no frames to propagate over")
    if not keyframe_masks:
        raise PropagationError("at least one keyframe mask is needed")
    first = frames[0]
    size = tuple(np.asarray(first).shape[:2])
    for index, mask in keyframe_masks.items():
        if not 0 <= index < count:
            raise PropagationError(f"keyframe {index} outside the video's frames 0..{count - 1}")
        if np.asarray(mask).shape != size:
            raise PropagationError(
                f"keyframe {index}: mask size {np.asarray(mask).shape[::-1]} differs from the frame size {size[::-1]}"
            )
    return count, size


def _label_set(keyframe_masks: dict[int, np.ndarray]) -> list[int]:
    """Sorted labels of all keyframe masks, background 0 always included."""
    labels = {0}
    for mask in keyframe_masks.values():
        labels |= {int(v) for v in np.unique(mask)}
    return sorted(labels)


def _segments(count: int, keyframes: list[int]) -> list[tuple[int | None, int | None, list[int]]]:
    """(previous keyframe, next keyframe, frames strictly between, maybe none) for the prefix, each gap, the suffix."""
    bounds = [None, *keyframes, None]
    segments = []
    for left, right in zip(bounds[:-1], bounds[1:]):
        start = 0 if left is None else left + 1
        stop = count if right is None else right
        segments.append((left, right, list(range(start, stop))))
    return segments


def iter_propagate(
    frames: Sequence[np.ndarray],
    keyframe_masks: dict[int, np.ndarray],
    featurizer,
    config: PropagationConfig | None = None,
) -> Iterator[FrameResult]:
    """Masks and confidences of every frame, in frame order, from the masks of annotated keyframes.

    `featurizer` is a `Featurizer` (ViT, dense encoder or pixels), COPY (copy the nearest keyframe's
    mask), or a learned propagator with its own `iter_propagate(frames, keyframe_masks)` (the memory
    VOS model, `segloop.platform.vos.memory.MemoryPropagator`). Keyframes keep their own mask.
    """
    if hasattr(featurizer, "iter_propagate"):
        yield from featurizer.iter_propagate(frames, keyframe_masks)
        return
    config = config or PropagationConfig()
    count, size = _validate(frames, keyframe_masks)
    keyframe_masks = {int(k): np.asarray(v, dtype=np.uint8) for k, v in keyframe_masks.items()}
    if isinstance(featurizer, str):
        if featurizer != COPY:
            raise PropagationError(f"unknown propagation method {featurizer!r}")
        yield from _iter_copy(count, keyframe_masks)
        return
    yield from _iter_features(frames, keyframe_masks, featurizer, config, count, size)


def propagate(
    frames: Sequence[np.ndarray],
    keyframe_masks: dict[int, np.ndarray],
    featurizer,
    config: PropagationConfig | None = None,
) -> PropagationResult:
    """All masks (T, H, W) and per-frame confidences; see `iter_propagate`."""
    results = list(iter_propagate(frames, keyframe_masks, featurizer, config))
    return PropagationResult(np.stack([r.mask for r in results]), [r.confidence for r in results])


def _merge_weights(index: int, left: int | None, right: int | None) -> tuple[float, float]:
    """(forward weight, backward weight) of a frame between keyframes `left` and `right` (either may be None)."""
    if left is None:
        return 0.0, 1.0
    if right is None:
        return 1.0, 0.0
    return (right - index) / (right - left), (index - left) / (right - left)


def _iter_copy(count: int, keyframe_masks: dict[int, np.ndarray]) -> Iterator[FrameResult]:
    """Copy baseline: each frame takes the mask of its nearest keyframe (ties: the earlier one)."""
    keyframes = sorted(keyframe_masks)
    for left, right, indices in _segments(count, keyframes):
        for index in indices:
            w_fwd, w_bwd = _merge_weights(index, left, right)
            source = left if w_fwd >= w_bwd else right
            mask = keyframe_masks[source].copy()
            if left is not None and right is not None:
                other = keyframe_masks[right if source == left else left]
                agree = keyframe_masks[left] == keyframe_masks[right]
                max_prob = np.where(agree, 1.0, max(w_fwd, w_bwd))
                confidence = frame_confidence(mask, max_prob, pass_disagreement(mask, other), 2, False)
            else:
                confidence = frame_confidence(mask, np.ones(mask.shape), 0.0, 1, False)
            yield FrameResult(index, mask, confidence)
        if right is not None:
            yield _keyframe_result(right, keyframe_masks[right])


def _keyframe_result(index: int, mask: np.ndarray) -> FrameResult:
    """A keyframe's own mask, fully confident."""
    return FrameResult(index, mask.copy(), frame_confidence(mask, np.ones(mask.shape), 0.0, 0, True))


def _context_keyframes(source: int, keyframes: list[int], limit: int) -> list[int]:
    """The pass's source keyframe and the temporally nearest other keyframes, `limit` in all."""
    others = sorted((k for k in keyframes if k != source), key=lambda k: (abs(k - source), k))
    return [source, *others[: limit - 1]]


def _run_pass(store: _FeatureStore, order: list[int], source: int, keyframes: list[int],
              keyframe_labels: dict[int, object], config: PropagationConfig,
              grid: tuple[int, int]) -> Iterator[tuple[int, object]]:
    """(frame index, soft labels (h*w, L)) along `order`, starting from keyframe `source`.

    Each context frame is cut into its window blocks once (keyframes per pass, a propagated frame when it
    joins the recent queue), so a query frame only pays for its own similarities.
    """
    import torch

    context = _context_keyframes(source, keyframes, config.max_keyframes_in_context)
    fixed = window_blocks(torch.stack([store.pin(k) for k in context]),
                          torch.stack([keyframe_labels[k] for k in context]), grid, config.radius)
    recent = RecentBlocks(min(config.n_last, len(order)))  # a queue longer than the pass would only hold zeros
    recent_radius = config.recent_window()
    for index, features in store.iterate(order):
        soft = topk_from_blocks(features, [fixed, *recent.blocks()], grid, config.topk, config.temperature)
        if config.n_last:
            recent.push(window_blocks(features[None], soft[None], grid, recent_radius))
        yield index, soft


def _iter_features(frames, keyframe_masks, featurizer: Featurizer, config: PropagationConfig,
                   count: int, size: tuple[int, int]) -> Iterator[FrameResult]:
    """Propagation with a featurizer: per gap a backward pass (stored), then a forward pass merged into it."""
    import torch

    keyframes = sorted(keyframe_masks)
    labels = _label_set(keyframe_masks)
    grid = featurizer.grid(*size)
    keyframe_labels = {
        k: torch.from_numpy(keyframe_soft_labels(m, labels, grid, config.label_downsample)).to(featurizer.device)
        for k, m in keyframe_masks.items()
    }
    store = _FeatureStore(frames, featurizer, config)
    for left, right, indices in _segments(count, keyframes):
        backward: dict[int, object] = {}
        if right is not None and indices:
            backward = dict(_run_pass(store, indices[::-1], right, keyframes, keyframe_labels, config, grid))
        forward_iter = (
            _run_pass(store, indices, left, keyframes, keyframe_labels, config, grid)
            if left is not None else ((i, None) for i in indices)
        )
        for index, forward in forward_iter:
            yield _merged_result(index, forward, backward.pop(index, None), left, right, grid, size, labels, config)
        store.clear()
        if right is not None:
            yield _keyframe_result(right, keyframe_masks[right])


def _merged_result(index: int, forward, backward, left, right, grid, size, labels, config) -> FrameResult:
    """Mask and confidence of one frame from its forward and/or backward soft labels."""
    w_fwd, w_bwd = _merge_weights(index, left, right)
    if forward is not None and backward is not None:
        soft = w_fwd * forward + w_bwd * backward
        lookup = np.asarray(labels, dtype=np.uint8)
        disagreement = pass_disagreement(
            lookup[forward.argmax(1).cpu().numpy()], lookup[backward.argmax(1).cpu().numpy()], background=0
        )
        passes = 2
    else:
        soft = forward if forward is not None else backward
        disagreement, passes = 0.0, 1
    mask, max_prob = soft_to_mask(soft, grid, size, labels, config.normalize_channels)
    return FrameResult(index, mask, frame_confidence(mask, max_prob, disagreement, passes, False))


# --------------------------------------------------------------------------------------------
# Keyframe choice
# --------------------------------------------------------------------------------------------


def keyframe_mask_files(name: str, paths: Sequence[Path], mask_dir: Path, spec: str) -> dict[int, Path]:
    """{keyframe index: its annotation file} of a DAVIS sequence, refused (PropagationError naming the sequence or
    the missing file) when the spec does not fit the sequence or a keyframe has no mask."""
    try:
        keyframes = parse_keyframes(spec, len(paths))
    except PropagationError as exc:
        raise PropagationError(f"{name} ({len(paths)} frames): {exc}") from None
    mask_paths = {index: mask_dir / f"{paths[index].stem}.png" for index in keyframes}
    missing = [path for path in mask_paths.values() if not path.is_file()]
    if missing:
        raise PropagationError(f"{missing[0]}: keyframe annotation not found"
                               + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return mask_paths


def parse_keyframes(spec: str, count: int) -> list[int]:
    """Keyframe indices from 'first', 'uniform:K' (i·T//K, i < K) or 'I,J,...' for a video of `count` frames."""
    spec = spec.strip()
    if count <= 0:
        raise PropagationError("video has no frames")
    if spec == "first":
        return [0]
    if spec.startswith("uniform:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise PropagationError(f"keyframes {spec!r}: expected uniform:K with an integer K") from None
        if k < 1:
            raise PropagationError(f"keyframes {spec!r}: K must be ≥ 1")
        k = min(k, count)
        return [i * count // k for i in range(k)]
    try:
        indices = sorted({int(part) for part in spec.split(",") if part.strip()})
    except ValueError:
        raise PropagationError(
            f"keyframes {spec!r}: expected first, uniform:K or comma-separated frame indices") from None
    if not indices:
        raise PropagationError(f"keyframes {spec!r}: no frame index given")
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise PropagationError(f"keyframes {spec!r}: frame(s) {bad} outside 0..{count - 1}")
    return indices
