"""Pretrained weights of an operation: a DB checkpoint id or a local file, resolved in one place."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from segloop.platform.core.errors import ValidationError
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import CheckpointInfo
from segloop.platform.db.stores import artifacts

PRETRAINED_KINDS = ("pretrain",)


def pretrained_checkpoint(checkpoint_id: int, engine: Engine | None = None) -> CheckpointInfo:
    """The pretrain checkpoint with this id (its weights file exists), or an error saying why not."""
    with session_scope(engine or get_engine()) as session:
        return artifacts.usable_checkpoint(session, checkpoint_id, PRETRAINED_KINDS)


def checkpoint_backbone(checkpoint_id: int, engine: Engine | None = None) -> tuple[str, str]:
    """(backbone name, weights file) of a pretrain checkpoint id."""
    checkpoint = pretrained_checkpoint(checkpoint_id, engine)
    return checkpoint.backbone, checkpoint.path


def pretrained_weights(checkpoint_id: int | None, weights: str | None, engine: Engine | None = None) -> str | None:
    """The weights file of a pretrain checkpoint id, else the local file or `segloop pretrain --out` folder given
    (None: random init)."""
    from segloop.pretrain.backbones import BackboneError, weights_file

    if checkpoint_id is not None:
        return pretrained_checkpoint(checkpoint_id, engine).path
    if weights is None:
        return None
    try:
        return str(weights_file(weights))
    except BackboneError:
        raise ValidationError(f"weights: {Path(weights).name} is neither a weights file nor a pretrain run folder"
                              ) from None
