"""The VSS temporal module (carry through the correspondence + learned gate), the temporal flicker metric, VSS
scores on held-out videos, and `predict` with a VOS checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.masks import read_mask
from segloop.platform.evaluation import metrics as evaluation
from segloop.platform.features.backbone import FeatureSpec, video_features
from segloop.platform.vss import head as vss
from segloop.platform.vss import temporal

SPEC = FeatureSpec(backbone="vit_tiny_patch16_224", short_side=64, batch_size=12)
QUICK = temporal.TemporalConfig(short_side=64, steps=30, rounds=1, unroll=2, topk=3, radius=2)


def test_gate_shapes_and_untrained_gate_is_the_average() -> None:
    """The gate maps (B, 2C + 1, h, w) to one weight per pixel; untrained, the fusion is the plain average."""
    gate = temporal.build_gate(3, hidden=4)
    current = torch.softmax(torch.randn(2, 3, 10, 12), dim=1)
    carried = torch.softmax(torch.randn(2, 3, 10, 12), dim=1)
    confidence = torch.rand(2, 1, 10, 12)
    fused, weight = temporal.fuse(gate, current, carried, confidence)
    assert fused.shape == (2, 3, 10, 12) and weight.shape == (2, 1, 10, 12)
    assert torch.allclose(fused, (current + carried) / 2, atol=1e-6)
    torch.nn.init.normal_(gate[-1].weight)
    fused, weight = temporal.fuse(gate, current, carried, confidence)
    assert torch.allclose(fused.sum(1), torch.ones(2, 10, 12), atol=1e-5)
    assert bool(((weight > 0) & (weight < 1)).all()) and weight.std() > 0


def _noise_frame(seed: int = 0) -> np.ndarray:
    """A 128 × 128 RGB frame of noise: every cell's colour features are distinct."""
    return np.random.default_rng(seed).integers(0, 256, size=(128, 128, 3), dtype=np.uint8)


def test_identical_frames_carry_the_previous_probabilities_unchanged() -> None:
    """Between two identical frames each cell's best match is itself: carried maps = the source's, confidence 1."""
    config = temporal.TemporalConfig(short_side=128, topk=1, radius=2)
    correspondence = temporal.Correspondence(temporal.EncoderRef().featurizer(config), config)
    frame = _noise_frame()
    features, grid = correspondence.features([frame, frame])
    assert grid == (8, 8)
    maps = torch.softmax(torch.randn(3, *grid), dim=0)
    carried, confidence = correspondence.carry(maps, features[0], features[1], grid)
    assert torch.allclose(carried, maps, atol=1e-5)
    assert torch.allclose(confidence, torch.ones(1, *grid), atol=1e-5)
    other = _noise_frame(1)
    _, low = correspondence.carry(maps, correspondence.features([other])[0][0], features[1], grid)
    assert float(low.mean()) < 0.9  # a different frame matches less well


def test_smooth_video_with_the_average_fuses_each_frame_with_the_previous_fused_one() -> None:
    """Fixed average on a still video: fused_t = (head_t + fused_{t-1}) / 2, the first frame kept."""
    config = temporal.TemporalConfig(fusion=temporal.AVERAGE, short_side=128, topk=1, radius=2)
    model = temporal.TemporalModel(temporal.build_gate(2), 2, config, temporal.EncoderRef(), [])
    head = np.random.default_rng(0).dirichlet([1, 1], size=(3, 8, 8)).transpose(0, 3, 1, 2).astype(np.float32)
    frames = [_noise_frame()] * 3
    fused = temporal.smooth_video(model, head, frames)
    assert np.allclose(fused[0], head[0])
    assert np.allclose(fused[1], (head[1] + head[0]) / 2, atol=1e-5)
    assert np.allclose(fused[2], (head[2] + fused[1]) / 2, atol=1e-5)


def test_temporal_flicker_counts_changes_only_where_the_truth_is_steady() -> None:
    """4 pixels, 3 frames: one predicted change where the truth holds (1/8); a change with the truth, void ignored."""
    gt = [np.array([[0, 0], [1, 255]], np.uint8)] * 3
    pred = [np.array([[0, 0], [1, 1]], np.uint8), np.array([[0, 1], [1, 0]], np.uint8),
            np.array([[0, 1], [1, 1]], np.uint8)]
    assert evaluation.temporal_flicker(pred, gt) == pytest.approx(1 / 6)  # 3 steady pixels × 2 pairs, 1 change
    moving = [gt[0], np.array([[0, 1], [1, 255]], np.uint8), np.array([[0, 1], [1, 255]], np.uint8)]
    assert evaluation.temporal_flicker(pred, moving) == pytest.approx(0.0)  # pixel (0, 1) changes with its truth
    assert evaluation.temporal_flicker(pred, gt, frames=[0, 2]) is None  # no consecutive scored pair
    assert evaluation.temporal_flicker(pred, gt, frames=[1, 2]) == pytest.approx(0.0)
    result = evaluation.evaluate_vss({"v": pred}, {"v": gt}, 2)
    assert result["temporal_flicker"] == pytest.approx(1 / 6)


@pytest.fixture(scope="module")
def synth(synth_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """(frames, features, binary ground truth) of the synthetic videos, embedded once per module."""
    from segloop.platform.vos.frames import LoadedFrames

    layout = DavisLayout(synth_root)
    paths = {p.name: sorted(p.glob("*.jpg")) for p in sorted(layout.images_dir.iterdir())}
    feats = video_features(paths, SPEC, tmp_path_factory.mktemp("features"))
    gt = {name: [(read_mask(layout.masks_dir / name / f"{p.stem}.png") > 0).astype(np.uint8) for p in files]
          for name, files in paths.items()}
    return {name: LoadedFrames.of(files, name) for name, files in paths.items()}, feats, gt


def test_temporal_checkpoint_trains_saves_and_reloads(synth, tmp_path: Path) -> None:
    """The gate's loss falls; the temporal module travels in the VSS checkpoint and predicts the same after loading."""
    frames, feats, gt = synth
    samples = [vss.Sample(name, i, gt[name][i]) for name in frames for i in (1, 5, 9)]
    config = vss.VSSConfig(min_steps=30, epochs=1, device="cpu")
    trained = vss.train_vss(samples, feats, 2, SPEC, config)
    trained.temporal = temporal.train_temporal(samples, feats, frames, 2, SPEC, config, temporal.EncoderRef(), QUICK)
    assert trained.temporal.losses[-1] < trained.temporal.losses[0]
    loaded, _ = vss.load_vss(vss.save_vss(tmp_path / "vss.pt", trained))
    assert loaded.temporal is not None and loaded.temporal.config == QUICK
    name = next(iter(frames))
    head, fused = temporal.predict_frames(loaded, feats[name], frames[name])
    assert fused is not None and fused.shape == head.shape
    assert np.allclose(fused, temporal.predict_frames(trained, feats[name], frames[name])[1], atol=1e-5)
    assert np.allclose(fused.sum(1), 1.0, atol=1e-4) and np.allclose(fused[0], head[0])
    trained.temporal = None
    assert temporal.predict_frames(trained, feats[name], frames[name])[1] is None


def test_temporal_settings_are_checked() -> None:
    """A bad setting is named."""
    with pytest.raises(vss.FinetuneError, match="fusion"):
        temporal.TemporalConfig(fusion="flow")
    with pytest.raises(vss.FinetuneError, match="radius"):
        temporal.TemporalConfig(radius=0)


def test_finetune_vss_with_temporal_scores_held_out_videos_and_predict_uses_it(synth_root: Path, sqlite,
                                                                              tmp_path: Path) -> None:
    """finetune_vss_project(temporal, val_videos=1): scores with and without the module on held-out frames and on
    the held-out video; the checkpoint carries the module and predict applies it."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts, metrics, projects
    from segloop.platform.media.ingest import IngestOptions, ingest_paths
    from segloop.platform.services.finetuning import HELD_OUT_VIDEOS, finetune_vss_project, predict_project

    settings, engine = sqlite
    assert not ingest_paths([synth_root], IngestOptions(project="tc"), settings).failed
    result = finetune_vss_project("tc", tmp_path / "out", short_side=64, val_videos=1, temporal=QUICK,
                                  config=vss.VSSConfig(min_steps=30, epochs=1, device="cpu"), settings=settings)
    for name in ("mIoU", "mIoU_without_temporal", f"{HELD_OUT_VIDEOS}::mIoU", f"{HELD_OUT_VIDEOS}::temporal_flicker",
                 f"{HELD_OUT_VIDEOS}::mIoU_without_temporal", f"{HELD_OUT_VIDEOS}::temporal_flicker_without_temporal"):
        assert 0.0 <= result.metrics[name] <= 1.0, name
    assert result.trained_on == 10 and result.evaluated_on == 2 + 12
    with session_scope(engine) as session:
        checkpoint = artifacts.get_checkpoint(session, result.checkpoint_id)
        assert len(checkpoint.params["validation_videos"]) == 1 and checkpoint.params["temporal"]["encoder"] == "pixels"
        project_id = projects.get_project(session, "tc").id
        scopes = {m.scope for m in metrics.list_metrics(session, project_id=project_id)}
        assert {"overall", "class", HELD_OUT_VIDEOS} <= scopes
    predicted = predict_project("tc", result.checkpoint_id, settings=settings)
    assert predicted["temporal"] is True and len(predicted["files"]) == 2
    loaded, _ = vss.load_vss(result.path)
    probs, _, _ = vss.load_predictions(predicted["files"][0])
    assert probs.shape[:2] == (12, 2) and loaded.temporal is not None


def test_val_videos_must_leave_a_video_to_train_on(synth_root: Path, sqlite, tmp_path: Path) -> None:
    """Holding out every labelled video is refused with the field named, before any frame is embedded (it was
    refused only after the features, minutes on a large project)."""
    from segloop.platform.media.ingest import IngestOptions, ingest_paths
    from segloop.platform.services.finetuning import finetune_vss_project

    settings, _ = sqlite
    assert not ingest_paths([synth_root], IngestOptions(project="tv"), settings).failed
    reports: list[str] = []
    with pytest.raises(vss.FinetuneError, match="val_videos"):
        finetune_vss_project("tv", tmp_path / "out", short_side=64, val_videos=2, settings=settings,
                             progress=lambda fraction, message: reports.append(message))
    assert reports == []


def test_predict_with_a_vos_checkpoint_propagates_from_the_human_masks(synth_root: Path, sqlite,
                                                                       tmp_path: Path) -> None:
    """A project whose videos have one human mask each: predict with its memory VOS model stores object
    probabilities per video (keyframes reproduce their masks) and vos_uncertainty per frame."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import annotations as annotation_store
    from segloop.platform.db.stores import footage, projects, scores
    from segloop.platform.media.ingest import IngestOptions, ingest_paths
    from segloop.platform.services.finetuning import finetune_vos_project, predict_project
    from segloop.platform.vos.memory_train import MemoryTrainConfig

    settings, engine = sqlite
    layout = DavisLayout(synth_root)
    folders = sorted(p for p in layout.images_dir.iterdir())
    assert not ingest_paths(folders, IngestOptions(project="vp"), settings).failed
    truth = {}
    with session_scope(engine) as session:
        project_id = projects.get_project(session, "vp").id
        for video in footage.list_videos(session, project_id):
            frames = footage.list_frames(session, video.id)
            masks = [read_mask(layout.masks_dir / video.name / f"{i:05d}.png") for i in range(len(frames))]
            truth[video.id] = masks
            for object_id in sorted(int(v) for v in np.unique(masks[0]) if v):
                annotation_store.save_annotation(session, frames[0].id, object_id, masks[0] == object_id, "manual",
                                                 status="submitted")
    trained = finetune_vos_project("vp", tmp_path / "vos", prop_short_side=64,
                                   config=MemoryTrainConfig(steps=3, short_side=64, crop=64), settings=settings)
    predicted = predict_project("vp", settings=settings)  # no id: the project's newest VSS or VOS checkpoint
    assert predicted["checkpoint_id"] == trained.checkpoint_id
    assert len(predicted["files"]) == 2 and predicted["skipped_videos"] == [] and predicted["frames"] == 24
    for path in predicted["files"]:
        probs, size, frame_ids = vss.load_predictions(path)
        video_id = int(Path(path).stem)
        masks = truth[video_id]
        assert probs.shape[0] == 12 and probs.shape[1] == int(masks[0].max()) + 1 and size == masks[0].shape
        assert (vss.class_map(probs[0], size) == masks[0]).mean() > 0.95  # the keyframe keeps its mask
    with session_scope(engine) as session:
        uncertainty = scores.latest_frame_scores(session, project_id, "vos_uncertainty")
        assert len(uncertainty) == 24 and all(0.0 <= v <= 1.0 for v in uncertainty.values())
        first_frames = [footage.list_frames(session, v)[0].id for v in truth]
        assert all(uncertainty[f] == 0.0 for f in first_frames)
    from click.testing import CliRunner

    from segloop.platform.cli import main

    ran = CliRunner().invoke(main, ["predict", "--checkpoint", str(trained.checkpoint_id), "--project", "vp"])
    assert ran.exit_code == 0, ran.output  # the command accepts a VOS checkpoint (a folder, not a weights file)
    assert f"predictions of checkpoint {trained.checkpoint_id}" in ran.output and "vos_uncertainty" in ran.output


def test_finetune_vss_command_has_the_temporal_and_held_out_video_options(cli) -> None:
    """`finetune vss` derives --temporal/--no-temporal and --val-videos from its params; predict takes a VOS id."""
    help_text = cli("finetune", "vss", "--help").output
    assert "--temporal / --no-temporal" in help_text and "--val-videos" in help_text
    assert "VOS" in cli("predict", "--help").output
