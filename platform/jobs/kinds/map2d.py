"""Job kinds behind the web UI's slower views: a t-SNE map of an embedding set, computed once and cached."""
from __future__ import annotations

from typing import Any

from segloop.platform.jobs.registry import JobContext, job_kind
from segloop.platform.services.params import Map2dParams


@job_kind("map2d")
def run_map2d(params: Map2dParams, ctx: JobContext) -> dict[str, Any]:
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
