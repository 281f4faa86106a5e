"""Loss curves of a run: metrics.jsonl -> a small PNG (matplotlib when installed, else drawn with PIL)
and a text table of evenly spaced steps."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from segloop.platform.core.storage import atomic_path

CURVES = ("loss", "dino", "ibot", "koleo", "random_walk")
COLOURS = ("black", "tab:blue", "tab:orange", "tab:green", "tab:red")
PIL_COLOURS = {"black": (0, 0, 0), "tab:blue": (31, 119, 180), "tab:orange": (255, 127, 14),
               "tab:green": (44, 160, 44), "tab:red": (214, 39, 40)}


def read_metrics(path: str | Path) -> list[dict]:
    """The JSONL records of a run, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def curves(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) for each logged loss term."""
    out = {}
    for name in CURVES:
        points = [(r["step"], r[name]) for r in records if name in r]
        if points:
            out[name] = ([p[0] for p in points], [p[1] for p in points])
    return out


def loss_table(records: list[dict], rows: int = 10) -> list[dict]:
    """About `rows` records at evenly spaced steps (first and last included), loss terms only."""
    if not records:
        return []
    picks = sorted({round(i * (len(records) - 1) / max(1, rows - 1)) for i in range(rows)})
    return [{"step": records[i]["step"], **{k: records[i][k] for k in CURVES if k in records[i]}} for i in picks]


def _plot_matplotlib(data: dict, path: Path) -> None:
    """Draw with matplotlib (one panel, each term)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    for (name, (steps, values)), colour in zip(data.items(), COLOURS):
        axis.plot(steps, values, label=name, color=colour, linewidth=1)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def _plot_pil(data: dict, path: Path, size: tuple[int, int] = (640, 360)) -> None:
    """Draw a plain line chart with PIL (axes, min/max labels, legend)."""
    width, height = size
    left, right, top, bottom = 50, 110, 15, 35
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    all_steps = [s for steps, _ in data.values() for s in steps]
    all_values = [v for _, values in data.values() for v in values]
    x0, x1 = min(all_steps), max(max(all_steps), min(all_steps) + 1)
    y0, y1 = min(all_values), max(max(all_values), min(all_values) + 1e-6)
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(step: float, value: float) -> tuple[float, float]:
        return left + (step - x0) / (x1 - x0) * plot_w, top + (1 - (value - y0) / (y1 - y0)) * plot_h

    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(120, 120, 120))
    draw.text((left - 45, top - 5), f"{y1:.2f}", fill="black")
    draw.text((left - 45, top + plot_h - 8), f"{y0:.2f}", fill="black")
    draw.text((left, top + plot_h + 5), f"step {x0}", fill="black")
    draw.text((left + plot_w - 60, top + plot_h + 5), f"step {x1}", fill="black")
    for row, ((name, (steps, values)), colour) in enumerate(zip(data.items(), COLOURS)):
        rgb = PIL_COLOURS[colour]
        if len(steps) > 1:
            draw.line([xy(s, v) for s, v in zip(steps, values)], fill=rgb, width=1)
        draw.text((left + plot_w + 10, top + 15 * row), name, fill=rgb)
    image.save(path, format="PNG")


def plot_metrics(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Write the loss-curve PNG atomically; None when the log has no records."""
    data = curves(read_metrics(metrics_path))
    if not data:
        return None
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        try:
            _plot_matplotlib(data, tmp)
        except ImportError:
            _plot_pil(data, tmp)
    return png_path
