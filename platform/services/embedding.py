"""Embed a project's stored frames with a backbone and register the vectors as an embedding set."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import atomic_write_bytes, relative_to_data, resolve_inside
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import EmbeddingSetInfo
from segloop.platform.db.stores import artifacts, footage, projects

VECTOR_KINDS = ("cls", "patch_mean")

EMBED_AGAIN = "embed the project again (`segloop embed --project ...`)"  # the remedy for a broken set


class EmbeddingSetError(ValueError):
    """An embedding set whose files are missing, unreadable or inconsistent; the message names the file."""


RANDOM_INIT_SEED = 0  # a random-init encoder is the same network on every run: its vectors are a repeatable baseline


def embed_project(
    project: str,
    backbone: str = DEFAULT_BACKBONE,
    checkpoint: str | Path | None = None,
    img_size: int = 224,
    batch_size: int = 32,
    vector: str = "cls",
    *,
    settings: Settings | None = None,
    job_id: int | None = None,
    checkpoint_id: int | None = None,
    device: str = "auto",
    workers: int = 1,
    random_init: bool = False,
    progress: Callable[[float, str], None] | None = None,
) -> EmbeddingSetInfo | None:
    """Embed every frame of `project` and register the (float16) vectors; returns the embedding set.

    The encoder is the `checkpoint_id` or `checkpoint` (a weights file or pretrain run folder) given, else the
    project's newest pretrained encoder; a random-init `backbone` only for a project without one or when
    `random_init` asks for it (the set's params record which, as `encoder`). Under torchrun the frames are sharded
    across processes; rank 0 registers the set, the others return None.
    """
    from segloop.platform.services.models import EncoderChoice, project_encoder
    from segloop.pretrain.backbones import create_backbone
    from segloop.pretrain.embed import save_embeddings

    if vector not in VECTOR_KINDS:
        raise EmbeddingSetError(f"--vector: {vector!r} is not one of {', '.join(VECTOR_KINDS)}")
    settings = settings or load_settings()
    engine = get_engine(settings)
    if random_init and (checkpoint is not None or checkpoint_id is not None):
        raise EmbeddingSetError("random init and a checkpoint exclude each other: drop one")
    encoder = (EncoderChoice(None, None, backbone, f"random-init {backbone}, as asked") if random_init else
               project_encoder(project, checkpoint_id, None if checkpoint is None else str(checkpoint), backbone,
                               engine))
    with session_scope(engine) as session:
        info = projects.get_project(session, project)
        frames = footage.project_frames(session, info.id)
    if not frames:
        raise EmbeddingSetError(f"project {project!r} has no frames to embed; ingest footage first")
    if progress is not None:
        progress(0.0, f"encoder: {encoder.source}")
    model = create_backbone(encoder.backbone, weights=encoder.weights, init_seed=RANDOM_INIT_SEED)
    paths = [resolve_inside(settings.data_dir, f.image_path) for f in frames]
    cls, patch_mean = _embed_sharded(paths, model, img_size, batch_size, device, workers, progress)
    if cls is None:
        return None  # a non-zero rank under torchrun: rank 0 saves and registers
    name = f"{project}-{encoder.backbone}-{uuid.uuid4().hex[:8]}"
    out_dir = settings.runs_dir / "embeddings" / name
    weights = encoder.weights or ""
    files = save_embeddings(out_dir / "embeddings", [str(f.id) for f in frames], cls, patch_mean,
                            {"project": project, "backbone": encoder.backbone, "checkpoint": weights,
                             "img_size": img_size})
    ids_path = out_dir / "frame_ids.npy"
    atomic_write_bytes(ids_path, _npy_bytes(np.asarray([f.id for f in frames], dtype=np.int64)))
    with session_scope(engine) as session:
        return artifacts.add_embedding_set(
            session, info.id, name, encoder.backbone, int(cls.shape[1]), len(frames),
            relative_to_data(settings.data_dir, files[vector]), relative_to_data(settings.data_dir, ids_path),
            checkpoint_id=encoder.checkpoint_id,
            params={"img_size": img_size, "vector": vector, "checkpoint": weights, "encoder": encoder.source,
                    "job_id": job_id, "cls_path": relative_to_data(settings.data_dir, files["cls"]),
                    "patch_mean_path": relative_to_data(settings.data_dir, files["patch_mean"])},
        )


def _embed_sharded(paths: list[Path], model, img_size: int, batch_size: int, device: str, workers: int, progress):
    """Embed all paths; under torchrun each rank embeds every world_size-th frame and rank 0 gathers them.

    Returns (cls, patch_mean) on rank 0 (or a single process) and (None, None) on the other ranks.
    """
    from segloop.pretrain import dist
    from segloop.pretrain.embed import embed_frames

    where = dist.init_distributed(device)
    if where.world_size <= 1:
        return embed_frames(paths, model, img_size, batch_size, workers, device, progress)
    import torch.distributed as torch_dist

    dist.broadcast_module(model)  # random-init backbones must be the same model on every rank

    mine = paths[where.rank::where.world_size]
    part = embed_frames(mine, model, img_size, batch_size, workers, device, progress) if mine else None
    parts: list = [None] * where.world_size
    torch_dist.all_gather_object(parts, part)
    if where.rank != 0:
        return None, None
    dim = next(p[0].shape[1] for p in parts if p is not None)
    cls = np.zeros((len(paths), dim), dtype=np.float32)
    patch_mean = np.zeros((len(paths), dim), dtype=np.float32)
    for rank, part in enumerate(parts):
        if part is not None:
            cls[rank::where.world_size], patch_mean[rank::where.world_size] = part
    return cls, patch_mean


def _npy_bytes(array: np.ndarray) -> bytes:
    """The .npy encoding of an array."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def load_embedding_set(embedding_set: EmbeddingSetInfo, settings: Settings | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(vectors float32 (N, D), frame ids (N,)) of a registered set, checked against its record."""
    vectors, frame_ids = embedding_arrays(embedding_set, settings)
    what = f"embedding set {embedding_set.id}"
    if vectors.ndim != 2 or vectors.shape != (embedding_set.count, embedding_set.dim):
        raise EmbeddingSetError(f"{what}: its vectors have shape {vectors.shape}, but the set records "
                                f"({embedding_set.count}, {embedding_set.dim}); {EMBED_AGAIN}")
    if frame_ids.shape != (embedding_set.count,):
        raise EmbeddingSetError(f"{what}: {frame_ids.shape} frame ids for {embedding_set.count} vectors; {EMBED_AGAIN}")
    vectors = vectors.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise EmbeddingSetError(f"{what}: its vectors contain NaN or infinite values; {EMBED_AGAIN}")
    return vectors, frame_ids.astype(np.int64)


def embedding_arrays(embedding_set: EmbeddingSetInfo, settings: Settings | None = None, *,
                     mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, frame ids) arrays of a registered set as stored (memory-mapped with `mmap`), or EmbeddingSetError
    naming the set and the file (its name, not the server's path: pages show these messages)."""
    settings = settings or load_settings()
    return tuple(_load_array(resolve_inside(settings.data_dir, relative), embedding_set.id, mmap)
                 for relative in (embedding_set.vectors_path, embedding_set.frame_ids_path))


def _load_array(path: Path, set_id: int, mmap: bool = False) -> np.ndarray:
    """np.load of one file of an embedding set, or EmbeddingSetError naming the set and the file."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise EmbeddingSetError(f"embedding set {set_id}: its file {path.name} is missing; {EMBED_AGAIN}") from None
    except (OSError, ValueError, EOFError):
        raise EmbeddingSetError(f"embedding set {set_id}: its file {path.name} is corrupt or truncated (not a NumPy "
                                f"array file); {EMBED_AGAIN}") from None


