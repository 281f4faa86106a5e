"""The mask canvas: a Streamlit v2 component (static JS/CSS shipped next to this file) for brush and polygon edits."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import streamlit as st

from segloop.platform.services import labeling

_HERE = Path(__file__).parent
_COMPONENT = st.components.v2.component(
    "segloop_mask_canvas",
    html="",
    js=(_HERE / "mask_canvas.js").read_text(encoding="utf-8"),
    css=(_HERE / "mask_canvas.css").read_text(encoding="utf-8"),
)
_PALETTE = {str(i): labeling.object_color(i) for i in range(1, 256)}


def data_url(image: np.ndarray, fmt: str) -> str:
    """A base64 data URL of an RGB (jpeg) or RGBA (png) image."""
    if fmt == "jpeg":
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        mime = "image/jpeg"
    else:
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA))
        mime = "image/png"
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as {fmt}")
    return f"data:{mime};base64,{base64.b64encode(encoded.tobytes()).decode('ascii')}"


def mask_canvas(
    *,
    key: str,
    image: np.ndarray,
    labels: np.ndarray,
    token: str,
    tool: str,
    erase: bool,
    object_id: int,
    radius: float,
    alpha: float = 0.5,
    display_width: int = 960,
) -> list[labeling.Edit]:
    """Draw the frame with its label map; returns the edits made since `token` last changed."""
    height, width = labels.shape
    data: dict[str, Any] = {
        "image": data_url(image, "jpeg"),
        "overlay": data_url(labeling.colorize(labels), "png"),
        "width": int(width),
        "height": int(height),
        "token": token,
        "tool": tool,
        "erase": bool(erase),
        "object_id": int(object_id),
        "color": labeling.object_color(object_id),
        "palette": _PALETTE,
        "radius": float(radius),
        "alpha": float(alpha),
        "display_width": int(display_width),
    }
    result = _COMPONENT(key=key, data=data, default={"edits": None}, on_edits_change=lambda: None)
    edits = getattr(result, "edits", None)
    if not isinstance(edits, dict) or edits.get("token") != token:
        return []
    return labeling.parse_edits(edits)
