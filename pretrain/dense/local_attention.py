"""Windowed softmax attention between two feature maps: each query cell attends to the key cells within
`radius` cells (Chebyshev) of its own position.

Computed tile by tile (as in HaloNet's blocked local attention, Vaswani et al., 2021): the query map is
cut into `tile`×`tile` blocks, each block meets the keys of its block grown by `radius` on every side
through one batched matrix product, and keys outside each query's own window are masked. Cost is
O(H·W·(tile + 2r)²·C), linear in the number of cells; no (H·W)² matrix is ever formed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, radius: int, temperature: float) -> None:
    """Raise ValueError unless query (B, C, H, W), key (B, R, C, H, W) and value (B, R, D, H, W) share one grid."""
    if query.dim() != 4 or key.dim() != 5 or key.shape[:1] + key.shape[2:] != query.shape:
        raise ValueError(f"query {tuple(query.shape)} must be (B, C, H, W) and key {tuple(key.shape)} (B, C, H, W) or "
                         "(B, R, C, H, W) on the same grid")
    if value.dim() != 5 or value.shape[:2] != key.shape[:2] or value.shape[3:] != query.shape[2:]:
        raise ValueError(f"value {tuple(value.shape)} must be (B, D, H, W) or (B, R, D, H, W) on the query grid "
                         f"{tuple(query.shape)}, one map per key map")
    if radius < 0 or temperature <= 0:
        raise ValueError(f"radius must be >= 0 and temperature > 0 (got {radius}, {temperature})")


def _references(key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Key and value with a reference axis: a single (B, C, H, W) map becomes (B, 1, C, H, W)."""
    return (key[:, None] if key.dim() == 4 else key), (value[:, None] if value.dim() == 4 else value)


def _window_mask(tile: int, radius: int, device: torch.device) -> torch.Tensor:
    """(tile², (tile+2r)²) bool: halo key (u, v) lies within `radius` of tile query (i, j)."""
    halo = tile + 2 * radius
    q = torch.arange(tile, device=device)
    k = torch.arange(halo, device=device) - radius
    near = (k[None, :] - q[:, None]).abs() <= radius  # (tile, halo)
    return (near[:, None, :, None] & near[None, :, None, :]).reshape(tile * tile, halo * halo)


def _tiled_logits(query: torch.Tensor, key: torch.Tensor, radius: int, temperature: float,
                  tile: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Logits (B, tiles, tile², R·halo²) of each query cell against its tile's halo of keys, the mask of keys
    inside each query's own window, and the layout (tile, halo, pad_h, pad_w)."""
    batch, channels, height, width = query.shape
    refs = key.shape[1]
    tile = max(1, min(tile, max(height, width)))
    pad_h, pad_w = -height % tile, -width % tile
    halo = tile + 2 * radius
    valid = torch.ones(1, 1, height, width, dtype=query.dtype, device=query.device)
    q = F.pad(query, (0, pad_w, 0, pad_h))
    padding = (radius, radius + pad_w, radius, radius + pad_h)
    k, inside = F.pad(key.flatten(0, 1), padding), F.pad(valid, padding)
    grid_h, grid_w = (height + pad_h) // tile, (width + pad_w) // tile
    tiles = grid_h * grid_w
    q_tiles = F.unfold(q, tile, stride=tile).view(batch, channels, tile * tile, tiles)
    k_tiles = F.unfold(k, halo, stride=tile).view(batch, refs, channels, halo * halo, tiles)
    in_tiles = F.unfold(inside, halo, stride=tile).view(1, 1, halo * halo, tiles) > 0
    q_tiles = q_tiles.permute(0, 3, 2, 1).reshape(batch * tiles, tile * tile, channels)
    k_tiles = k_tiles.permute(0, 4, 2, 1, 3).reshape(batch * tiles, channels, refs * halo * halo)
    allowed = _window_mask(tile, radius, query.device)[None, None] & in_tiles.permute(0, 3, 1, 2)
    logits = torch.bmm(q_tiles, k_tiles).view(batch, tiles, tile * tile, -1) / temperature
    return logits, allowed.repeat(1, 1, 1, refs), (tile, halo, pad_h, pad_w)


def local_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, radius: int,
                    temperature: float, tile: int = 8) -> torch.Tensor:
    """(B, D, H, W): softmax(q·k / temperature) over each query's (2r+1)² key window, applied to value.

    `key`/`value` are one map (B, C|D, H, W) or R reference maps (B, R, C|D, H, W); with several, one
    softmax spans the query's window in every reference.
    """
    key, value = _references(key, value)
    _check(query, key, value, radius, temperature)
    batch, _, height, width = query.shape
    refs, depth = key.shape[1], value.shape[2]
    logits, allowed, (tile, halo, pad_h, pad_w) = _tiled_logits(query, key, radius, temperature, tile)
    tiles = logits.shape[1]
    v = F.pad(value.flatten(0, 1), (radius, radius + pad_w, radius, radius + pad_h))
    v_tiles = F.unfold(v, halo, stride=tile).view(batch, refs, depth, halo * halo, tiles)
    v_tiles = v_tiles.permute(0, 4, 1, 3, 2).reshape(batch * tiles, refs * halo * halo, depth)
    weights = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    out = torch.bmm(weights.view(batch * tiles, tile * tile, -1), v_tiles)
    out = out.view(batch, tiles, tile * tile, depth).permute(0, 3, 2, 1).reshape(batch, depth * tile * tile, tiles)
    out = F.fold(out, (height + pad_h, width + pad_w), tile, stride=tile)
    return out[:, :, :height, :width]


def local_affinity_kl(teacher_query: torch.Tensor, teacher_key: torch.Tensor, student_query: torch.Tensor,
                      student_key: torch.Tensor, radius: int, temperature: float, tile: int = 8) -> torch.Tensor:
    """Mean over query cells of KL(teacher || student) between the two maps' windowed softmax affinities.

    Each pair is (B, C, H, W) query and key maps on one grid; the teacher's side gets no gradient.
    """
    grid = teacher_query.shape[:1] + teacher_query.shape[2:]
    for name, query, key in (("teacher", teacher_query, teacher_key), ("student", student_query, student_key)):
        if query.dim() != 4 or key.shape != query.shape or query.shape[:1] + query.shape[2:] != grid:
            raise ValueError(f"{name} query {tuple(query.shape)} and key {tuple(key.shape)} must be (B, C, H, W) maps "
                             f"on the teacher's grid {tuple(grid)}")
    if radius < 0 or temperature <= 0:
        raise ValueError(f"radius must be >= 0 and temperature > 0 (got {radius}, {temperature})")
    with torch.no_grad():
        logits, allowed, (tile, _, pad_h, pad_w) = _tiled_logits(
            teacher_query, teacher_key[:, None], radius, temperature, tile)
        blocked = torch.finfo(logits.dtype).min  # finite: a padding cell's empty window gives no NaN
        teacher = torch.log_softmax(logits.masked_fill(~allowed, blocked), dim=-1)
    logits, _, _ = _tiled_logits(student_query, student_key[:, None], radius, temperature, tile)
    student = torch.log_softmax(logits.masked_fill(~allowed, blocked), dim=-1)
    terms = (teacher.exp() * (teacher - student)).masked_fill(~allowed, 0.0).sum(dim=-1)
    height, width = teacher_query.shape[2:]
    real = F.pad(torch.ones(1, 1, height, width, device=terms.device), (0, pad_w, 0, pad_h))
    real = F.unfold(real, tile, stride=tile).transpose(1, 2) > 0  # (1, tiles, tile²): cells that are not padding
    return terms.masked_fill(~real, 0.0).sum() / (real.sum() * terms.shape[0])


def dense_masked_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, radius: int,
                           temperature: float) -> torch.Tensor:
    """Reference for tests: the full (H·W)² affinity to every reference, masked outside the window, then softmax."""
    key, value = _references(key, value)
    _check(query, key, value, radius, temperature)
    batch, channels, height, width = query.shape
    rows = torch.arange(height, device=query.device).repeat_interleave(width)
    cols = torch.arange(width, device=query.device).repeat(height)
    near = ((rows[:, None] - rows[None, :]).abs() <= radius) & ((cols[:, None] - cols[None, :]).abs() <= radius)
    logits = torch.einsum("bcq,brck->bqrk", query.flatten(2), key.flatten(3)) / temperature
    logits = logits.masked_fill(~near[None, :, None, :], float("-inf")).flatten(2)
    weights = torch.softmax(logits, dim=2)
    out = torch.einsum("bqk,bdk->bdq", weights, value.transpose(1, 2).flatten(2))
    return out.view(batch, value.shape[2], height, width)
