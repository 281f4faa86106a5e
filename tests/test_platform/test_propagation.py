"""Label propagation on DB videos: drafts for unlabelled frames, uncertainty scores, J&F metrics rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segloop.platform.core.davis import DavisLayout
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, metrics, projects, scores
from segloop.platform.media.ingest import IngestOptions, ingest_paths
from segloop.platform.services.propagation import DISAGREEMENT_SIGNAL, UNCERTAINTY_SIGNAL, propagate_video
from segloop.platform.vos import propagation as vos


def test_keyframes_scored_against_held_out_human_masks(davis_video, settings, engine) -> None:
    """With keyframes 0 and 6 of a fully annotated video, the other frames are scored, nothing overwritten."""
    config = vos.PropagationConfig(short_side=64, size_multiple=16, radius=4)
    featurizer = vos.make_featurizer("pixels", config=config, device="cpu", pixel_patch=8)
    result = propagate_video(davis_video.id, featurizer, config, "0,6", settings=settings)
    assert result.keyframes == [0, 6] and result.drafts == 0 and result.scored_frames == 10
    assert 0.3 < result.scores["J&F"] <= 1.0
    with session_scope(engine) as session:
        rows = metrics.list_metrics(session, project_id=davis_video.project_id)
        expected = {("video", "synth-007-000", n) for n in ("J&F", "J", "F")}
        assert {(m.scope, m.scope_key, m.name) for m in rows} == expected
        uncertainty = scores.latest_frame_scores(session, davis_video.project_id, UNCERTAINTY_SIGNAL)
        assert len(uncertainty) == 12
        frames = footage.list_frames(session, davis_video.id)
        assert uncertainty[frames[0].id] == 0.0 and uncertainty[frames[3].id] > 0.0
        assert len(scores.latest_frame_scores(session, davis_video.project_id, DISAGREEMENT_SIGNAL)) == 12
        latest = annotation_store.latest_annotations(session, frames[3].id)
        assert all(a.source == "imported" for a in latest)


def test_drafts_for_unlabelled_frames(synth_root: Path, settings, engine, tmp_path: Path) -> None:
    """A video with one manual mask: every other frame gets a propagated draft per object."""
    assert not ingest_paths([synth_root / "videos" / "synth-007-001.mp4"], IngestOptions(project="d"), settings).failed
    from segloop.platform.core.masks import read_mask

    first = read_mask(DavisLayout(synth_root).mask_path("synth-007-001", 0))
    with session_scope(engine) as session:
        video = footage.list_videos(session, projects.get_project(session, "d").id)[0]
        frames = footage.list_frames(session, video.id)
        for object_id in np.unique(first)[1:]:
            annotation_store.save_annotation(session, frames[0].id, int(object_id), first == object_id, "manual",
                                             expected_version=0)
    result = propagate_video(video.id, vos.COPY, settings=settings)
    assert result.drafts == 11 and result.scores == {}
    with session_scope(engine) as session:
        drafts = annotation_store.latest_annotations(session, frames[5].id)
    assert {a.source for a in drafts} == {"propagated"} and {a.status for a in drafts} == {"draft"}
    assert len(drafts) == len(np.unique(first)) - 1


def test_no_human_masks_is_a_clear_error(synth_root: Path, settings, engine) -> None:
    """A video without annotations cannot be propagated; the message names the video."""
    ingest_paths([synth_root / "videos" / "synth-007-000.mp4"], IngestOptions(project="e"), settings)
    with session_scope(engine) as session:
        video = footage.list_videos(session, projects.get_project(session, "e").id)[0]
    with pytest.raises(vos.PropagationError, match="has no human-annotated frame"):
        propagate_video(video.id, vos.COPY, settings=settings)


def test_cli_refusal_of_a_video_draws_no_progress_bar(synth_root: Path, settings, engine, cli) -> None:
    """`vos propagate --video ID` on a video without annotations: the error alone, no empty bar above it."""
    ingest_paths([synth_root / "videos" / "synth-007-000.mp4"], IngestOptions(project="e"), settings)
    with session_scope(engine) as session:
        video = footage.list_videos(session, projects.get_project(session, "e").id)[0]
    result = cli("vos", "propagate", "--video", str(video.id), "--method", "copy")
    assert result.exit_code == 1 and "has no human-annotated frame" in result.output
    assert f"video {video.id}" not in result.output.split("Error")[0]


def test_cli_video_mode(davis_video, cli, engine) -> None:
    """`segloop vos propagate --video ID --method copy --keyframes first` stores and prints the J&F."""
    result = cli("vos", "propagate", "--video", str(davis_video.id), "--method", "copy", "--keyframes", "first")
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        stored = {m.name: m.value for m in metrics.list_metrics(session, project_id=davis_video.project_id)}
    assert f"{stored['J&F']:.3f}" in result.output
    assert cli("vos", "propagate").exit_code != 0


def test_cli_video_mode_checks_every_video_before_propagating_any(davis_video, cli, engine, tmp_path: Path) -> None:
    """`--video GOOD --video 999999` stored GOOD's drafts, then failed on the unknown id; now nothing is stored."""
    from sqlalchemy import delete, func, select

    from segloop.platform.db.orm import Annotation

    def rows() -> int:
        with session_scope(engine) as session:
            return int(session.scalar(select(func.count()).select_from(Annotation)))

    with session_scope(engine) as session:  # only the first frame keeps its human mask: the rest get drafts
        later = [f.id for f in footage.list_frames(session, davis_video.id) if f.index > 0]
        session.execute(delete(Annotation).where(Annotation.frame_id.in_(later)))
    before = rows()
    result = cli("vos", "propagate", "--video", str(davis_video.id), "--video", "999999", "--method", "copy")
    assert result.exit_code == 1 and "video 999999 does not exist" in result.output
    assert rows() == before
    for extra in (["--out", str(tmp_path / "o")], ["--sequences", "x"], ["--overwrite"]):  # ignored without a word
        result = cli("vos", "propagate", "--video", str(davis_video.id), "--method", "copy", *extra)
        assert result.exit_code == 2 and f"{extra[0]} only apply to ROOT" in result.output, result.output
    assert rows() == before and not (tmp_path / "o").exists()


def test_cli_video_mode_uses_the_projects_propagators_by_default(davis_video, cli, engine, tmp_path: Path) -> None:
    """`vos propagate --video ID` without --method scores the project's propagators on the human masks and uses
    the best (before: a random-init ViT whatever the project had); `--model DIR` propagates with that VOS model."""
    import torch

    from segloop.platform.db.stores import artifacts
    from segloop.platform.vos import memory as mem
    from segloop.pretrain.backbones import create_backbone

    run = tmp_path / "run"
    run.mkdir()
    torch.save(create_backbone("vit_tiny_patch16_224").state_dict(), run / "teacher_backbone.pth")
    with session_scope(engine) as session:
        artifacts.add_checkpoint(session, "pretrain", "vit_tiny_patch16_224", str(run / "teacher_backbone.pth"),
                                 project_id=davis_video.project_id)
    args = ["vos", "propagate", "--video", str(davis_video.id), "--keyframes", "0,6", "--short-side", "64"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    note = " ".join(result.output.split()).split(f"video {davis_video.id}: ")[-1]
    assert "leave-one-keyframe-out" in note and "encoder 0." in note and "pixels 0." in note, result.output
    with session_scope(engine) as session:
        scored = {m.scope_key for m in metrics.list_metrics(session, project_id=davis_video.project_id)
                  if m.scope == "self-validation"}
    assert scored == {f"{davis_video.id}/encoder", f"{davis_video.id}/pixels"}
    model = mem.MemoryVOS(mem.LabCellEncoder(stride=8, cells=2), mem.MemoryConfig(hidden=8, value_dim=4, skip_dim=4))
    folder = mem.save_memory_model(model, tmp_path / "model")
    result = cli(*args, "--model", str(folder))
    assert result.exit_code == 0 and "vos" in result.output and "leave-one" not in result.output, result.output
    result = cli(*args, "--model", str(folder), "--method", "pixels")
    assert result.exit_code == 2 and "--model propagates with the VOS model" in result.output
