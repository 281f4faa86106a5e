"""The mask editor: a Streamlit v2 component (static JS/CSS shipped next to this file) that keeps every edit in the
browser and reports only actions (save, navigate, propagate, assist requests) with the label map as runs."""
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
_PALETTE = [labeling.object_color(i) for i in range(256)]


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


def mask_canvas(*, key: str, frame_id: int, token: str, image: np.ndarray, labels: np.ndarray, title: str,
                extra: dict[str, Any]) -> dict | None:
    """Draw the editor for one frame; returns the last action the browser sent (or None)."""
    height, width = labels.shape
    data: dict[str, Any] = {
        "frame_id": int(frame_id),
        "token": token,
        "title": title,
        "image": data_url(image, "jpeg"),
        "labels": labeling.label_runs(labels),
        "width": int(width),
        "height": int(height),
        "palette": _PALETTE,
        **extra,
    }
    result = _COMPONENT(key=key, data=data, default={"action": None}, on_action_change=lambda: None)
    action = getattr(result, "action", None)
    return action if isinstance(action, dict) else None


def pending_action(key: str) -> dict | None:
    """The action the browser sent with this rerun (read before the component is drawn again), if any."""
    state = st.session_state.get(key)
    action = state.get("action") if hasattr(state, "get") else None
    return action if isinstance(action, dict) else None
