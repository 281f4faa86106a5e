"""Save / load the dense encoder: one file `dense_encoder.pth` in the run folder holding its
architecture config and weights (written atomically)."""
from __future__ import annotations

from pathlib import Path

import torch

from segloop.platform.core.storage import read_torch_file
from segloop.pretrain.checkpoint import atomic_save
from segloop.pretrain.dense.encoder import DenseEncoder, EncoderConfig, EncoderConfigError

DENSE_NAME = "dense_encoder.pth"
FORMAT = "segloop-dense-encoder"
VERSION = 1


class DenseLoadError(ValueError):
    """A run folder or file that does not hold a usable dense encoder; the message names the path."""


def encoder_state(encoder: DenseEncoder) -> dict:
    """The dict written to disk: format tag, architecture config, float32 CPU weights."""
    encoder = getattr(encoder, "_orig_mod", encoder)
    weights = {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
               for k, v in encoder.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "config": encoder.config.as_dict(), "state_dict": weights}


def save_dense_encoder(encoder: DenseEncoder, path: str | Path) -> Path:
    """Write the encoder to `path` (a file, or a run folder -> folder/dense_encoder.pth), atomically."""
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / DENSE_NAME
    atomic_save(encoder_state(encoder), path)
    return path


def resolve_path(run_dir_or_file: str | Path) -> Path:
    """The dense_encoder.pth of a run folder, or the file itself."""
    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / DENSE_NAME
    if not path.is_file():
        raise DenseLoadError(f"{path}: no dense encoder here (run `segloop pretrain` with the dense objective on, "
                             "which writes RUN/dense_encoder.pth)")
    return path


def load_dense_encoder(run_dir_or_file: str | Path, skip_weight: float | None = None,
                       device: str | torch.device = "cpu") -> DenseEncoder:
    """The saved encoder in eval mode; `skip_weight` overrides the saved colour-fusion weight."""
    path = resolve_path(run_dir_or_file)
    state = read_torch_file(path, "dense encoder", DenseLoadError)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DenseLoadError(f"{path}: not a segloop dense encoder file (format tag missing)")
    values = dict(state["config"])
    if skip_weight is not None:
        values["skip_weight"] = float(skip_weight)
    try:
        encoder = DenseEncoder(EncoderConfig.from_dict(values, source=str(path)))
        encoder.load_state_dict(state["state_dict"])
    except (EncoderConfigError, RuntimeError) as exc:
        raise DenseLoadError(f"{path}: {exc}") from None
    return encoder.eval().to(device)
