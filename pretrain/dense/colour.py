"""sRGB -> CIE-Lab in torch (D65), scaled to about [-1, 1], and Lab averaged over small cells."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]])
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])


def _srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB values in [0, 1] -> linear light (the sRGB transfer function inverted)."""
    rgb = rgb.clamp(0.0, 1.0)
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


_UINT8_TO_LINEAR = _srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255.0).float()
_LINEAR_TABLE = _UINT8_TO_LINEAR.numpy().reshape(1, 256)
_LINEAR_TO_XYZ = (_RGB_TO_XYZ / _WHITE[:, None]).numpy()  # XYZ already divided by the white point
_F_TO_LAB = np.array([[0.0, 116.0, 0.0, -66.0], [500.0, -500.0, 0.0, 0.0], [0.0, 200.0, -200.0, 0.0]],
                     dtype=np.float32) / 50.0  # (f(X), f(Y), f(Z), 1) -> ((L - 50) / 50, a / 50, b / 50)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> Lab as ((L - 50) / 50, a / 50, b / 50)."""
    _check_rgb(rgb, "rgb_to_lab")
    return _linear_to_lab(_srgb_to_linear(rgb))


def uint8_rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB -> Lab as `rgb_to_lab` gives it, linearised through a 256-entry table.

    On the CPU the frames go through OpenCV one at a time and come back channels-last in memory: torch's
    elementwise chain over a whole batch of 480p frames leaves the cache (27 vs 9 ms a frame).
    """
    _check_rgb(rgb, "uint8_rgb_to_lab")
    if rgb.dtype != torch.uint8:
        raise ValueError(f"uint8_rgb_to_lab: expected uint8 values, got {rgb.dtype}")
    if rgb.device.type != "cpu":
        return _linear_to_lab(_UINT8_TO_LINEAR.to(rgb.device)[rgb.long()])
    frames = rgb.permute(0, 2, 3, 1).numpy()
    lab = np.empty(frames.shape, dtype=np.float32)
    for index, frame in enumerate(frames):
        lab[index] = _frame_lab(np.ascontiguousarray(frame))
    return torch.from_numpy(lab).permute(0, 3, 1, 2)


def _frame_lab(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) float32 normalised Lab (same formulas as `_linear_to_lab`)."""
    xyz = cv2.transform(cv2.LUT(frame, _LINEAR_TABLE), _LINEAR_TO_XYZ)
    f = cv2.pow(np.maximum(xyz, 1e-12), 1.0 / 3.0)
    np.copyto(f, 7.787 * xyz + 16.0 / 116.0, where=xyz <= 0.008856)
    return cv2.transform(f, _F_TO_LAB)


def _check_rgb(rgb: torch.Tensor, name: str) -> None:
    """Raise ValueError unless `rgb` is (B, 3, H, W)."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"{name}: expected (B, 3, H, W), got {tuple(rgb.shape)}")


def _linear_to_lab(linear: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) linear-light RGB -> normalised Lab."""
    matrix = _RGB_TO_XYZ.to(linear)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / _WHITE.to(linear).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    lightness = 116.0 * f[:, 1] - 16.0
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return torch.stack([(lightness - 50.0) / 50.0, a / 50.0, b / 50.0], dim=1)


def lab_cells(lab: torch.Tensor, stride: int, cells: int = 2) -> torch.Tensor:
    """(B, 3·cells², H/stride, W/stride): Lab area-averaged over cells×cells sub-cells of each stride cell."""
    if stride % cells:
        raise ValueError(f"lab_cells: stride {stride} is not a multiple of cells {cells}")
    pooled = F.avg_pool2d(lab, stride // cells) if stride > cells else lab
    return F.pixel_unshuffle(pooled, cells) if cells > 1 else pooled
