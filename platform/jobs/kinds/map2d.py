"""Job kinds behind the web UI's slower views: a t-SNE map of an embedding set, computed once and cached."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segloop.platform.jobs.registry import JobContext, job_kind


@dataclass
class MapJobParams:
    """Parameters of a map2d job: which embedding set, how many sampled frames, the method and its seed."""

    embedding_set_id: int = 0
    method: str = "tsne"
    max_points: int = 5_000
    seed: int = 0
    perplexity: float = 30.0


@job_kind("map2d", MapJobParams, "Compute and cache a 2-D map (t-SNE or PCA) of an embedding set for the Explore page.")
def run_map2d(params: MapJobParams, ctx: JobContext) -> dict[str, Any]:
    """Compute the map of a seeded sample of the set and cache it under runs/maps/."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts
    from segloop.platform.services.explore import compute_map

    with session_scope() as session:
        embedding_set = artifacts.get_embedding_set(session, params.embedding_set_id)
    ctx.progress(0.05, f"{params.method} of up to {params.max_points} frames of embedding set {embedding_set.id}")
    path = compute_map(embedding_set, load_settings(), params.method, params.max_points, params.seed,
                       params.perplexity)
    ctx.log(f"map cached at {path}")
    return {"embedding_set_id": embedding_set.id, "method": params.method, "path": str(path)}
