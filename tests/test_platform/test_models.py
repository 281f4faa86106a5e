"""The project's models in one place, and self-validation choosing the propagator to trust."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import artifacts
from segloop.platform.services import models
from segloop.platform.vos import propagation as vos
from segloop.platform.vos.selfval import held_out_prediction, rank_propagators


def moving_square_video(count: int = 10, size: int = 64) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """A red square sliding right over a textured grey background; its mask in every frame."""
    rng = np.random.default_rng(0)
    background = (rng.integers(90, 140, (size, size, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
    frames, masks = [], {}
    for t in range(count):
        frame = background.copy()
        mask = np.zeros((size, size), dtype=np.uint8)
        left = 4 + 4 * t
        frame[20:40, left:left + 16] = (220, 30, 30)
        mask[20:40, left:left + 16] = 1
        frames.append(frame)
        masks[t] = mask
    return np.stack(frames), masks


def test_self_validation_ranks_colour_above_copying_on_a_moving_object() -> None:
    """Leave-one-keyframe-out: propagation by colour follows the square, copying the nearest mask does not."""
    frames, masks = moving_square_video()
    human = {0: masks[0], 5: masks[5], 9: masks[9]}
    config = vos.PropagationConfig(short_side=64, size_multiple=8, radius=4)
    pixels = vos.make_featurizer("pixels", config=config, device="cpu", pixel_patch=8, pixel_cells=2)
    scores = rank_propagators(frames, human, {"copy": vos.COPY, "pixels": pixels}, config)
    assert list(scores) == ["pixels", "copy"]
    assert scores["pixels"] > scores["copy"] + 0.2
    hidden = held_out_prediction(frames, human, 5, pixels, config)
    assert hidden.shape == masks[5].shape and (hidden == 1).sum() > 0


def test_self_validation_needs_two_labelled_frames() -> None:
    """One human mask cannot be left out."""
    frames, masks = moving_square_video(4)
    with pytest.raises(vos.PropagationError, match="at least 2"):
        held_out_prediction(frames, {0: masks[0]}, 0, vos.COPY, vos.PropagationConfig(short_side=64))


def test_resolver_defaults_to_colour_without_a_trained_encoder(davis_video, engine) -> None:
    """No checkpoint: the default propagator is raw colour, never a random-init network."""
    found = models.project_models(davis_video.project_id, engine)
    assert found.encoder is None and found.vos is None and found.vss is None
    assert found.propagators() == [models.PIXELS] and found.default_propagator() == models.PIXELS


def test_resolver_prefers_the_projects_newest_encoder_and_its_dense_features(davis_video, engine,
                                                                             tmp_path: Path) -> None:
    """A registered pretrain run with a dense encoder becomes the default propagator, used at its stride."""
    pytest.importorskip("segloop.pretrain.dense")
    from segloop.pretrain.dense import DenseEncoder, EncoderConfig, save_dense_encoder

    run = tmp_path / "run"
    run.mkdir()
    save_dense_encoder(DenseEncoder(EncoderConfig(stride=8)), run)
    (run / "teacher_backbone.pth").write_bytes(b"unused here")
    with session_scope(engine) as session:
        older = artifacts.add_checkpoint(session, "pretrain", "vit_tiny_patch16_224", str(tmp_path / "old.pth"),
                                         project_id=davis_video.project_id)
        newest = artifacts.add_checkpoint(session, "pretrain", "vit_tiny_patch16_224",
                                          str(run / "teacher_backbone.pth"), project_id=davis_video.project_id)
    found = models.project_models(davis_video.project_id, engine)
    assert found.encoder.id == newest.id != older.id and found.encoder_source == run
    assert found.default_propagator() == models.ENCODER
    featurizer = models.make_propagator(found, models.ENCODER, vos.PropagationConfig(short_side=64), "cpu")
    assert isinstance(featurizer, vos.DenseFeaturizer) and featurizer.patch == 8


def test_self_validation_scores_are_stored_and_drive_the_choice(davis_video, settings, engine) -> None:
    """A video with human masks on every frame is scored; the stored scores name the propagator used."""
    config = vos.PropagationConfig(short_side=64, size_multiple=16, radius=4)
    choice = models.self_validate(davis_video.id, config, settings=settings, device="cpu")
    assert choice.propagator == models.PIXELS and set(choice.scores) == {models.PIXELS}
    assert 0.0 < choice.scores[models.PIXELS] <= 1.0
    found = models.project_models(davis_video.project_id, engine)
    stored = models.stored_choice(davis_video.id, found, engine)
    assert stored.propagator == models.PIXELS and stored.scores == pytest.approx(choice.scores)
    table = models.self_validation_table(davis_video.project_id, engine)
    assert table == [{"video": "synth-007-000", models.PIXELS: round(choice.scores[models.PIXELS], 3),
                      "used": models.PIXELS}]


def test_fine_tuning_builds_on_the_projects_encoder_by_default(davis_video, engine, tmp_path: Path) -> None:
    """No checkpoint given: the project's newest pretrained encoder; none registered: random init, said so."""
    bare = models.project_encoder("prop", None, None, "vit_tiny_patch16_224", engine)
    assert bare.checkpoint_id is None and bare.weights is None and "no pretrained encoder" in bare.source
    weights = tmp_path / "teacher_backbone.pth"
    weights.write_bytes(b"weights")
    with session_scope(engine) as session:
        checkpoint = artifacts.add_checkpoint(session, "pretrain", "vit_small_patch16_224", str(weights),
                                              project_id=davis_video.project_id)
    chosen = models.project_encoder("prop", None, None, "vit_tiny_patch16_224", engine)
    assert (chosen.checkpoint_id, chosen.weights, chosen.backbone) == (checkpoint.id, str(weights),
                                                                       "vit_small_patch16_224")
    assert "newest pretrained encoder" in chosen.source
    explicit = models.project_encoder("prop", None, str(weights), "vit_tiny_patch16_224", engine)
    assert (explicit.checkpoint_id, explicit.backbone) == (checkpoint.id, "vit_small_patch16_224")


def test_weights_are_built_as_the_backbone_they_were_trained_as(davis_video, engine, tmp_path: Path) -> None:
    """A checkpoint id, or a pretrain run folder / its weights file, brings its own backbone whatever `backbone`
    says (the default would not load them); weights that record none use `backbone`."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "teacher_backbone.pth").write_bytes(b"weights")
    (run / "config.yaml").write_text("model:\n  backbone: vit_small_patch16_224\n")
    with session_scope(engine) as session:
        other = artifacts.add_checkpoint(session, "pretrain", "vit_base_patch16_224", str(tmp_path / "b.pth"),
                                         project_id=davis_video.project_id)
    (tmp_path / "b.pth").write_bytes(b"weights")
    by_id = models.project_encoder("prop", other.id, None, "vit_tiny_patch16_224", engine)
    assert (by_id.checkpoint_id, by_id.weights, by_id.backbone) == (other.id, str(tmp_path / "b.pth"),
                                                                    "vit_base_patch16_224")
    for given in (run, run / "teacher_backbone.pth"):
        chosen = models.project_encoder("prop", None, str(given), "vit_tiny_patch16_224", engine)
        assert (chosen.checkpoint_id, chosen.weights, chosen.backbone) == (
            None, str(run / "teacher_backbone.pth"), "vit_small_patch16_224")
    (run / "config.yaml").write_text("[not, a, mapping]")
    plain = models.project_encoder("prop", None, str(run), "vit_tiny_patch16_224", engine)
    assert plain.backbone == "vit_tiny_patch16_224"


def test_the_vss_baseline_is_the_majority_class_of_the_training_labels() -> None:
    """Held-out frames do not count; void (255) never wins."""
    from segloop.platform.services.finetuning import ProjectFrames, majority_class

    frames = ProjectFrames()
    frames.labels = {"a": {0: np.full((4, 4), 2, np.uint8), 1: np.full((4, 4), 1, np.uint8)},
                     "b": {0: np.full((4, 4), 255, np.uint8)}}
    frames.labels["a"][1][:3] = 3
    assert majority_class(frames, held_out=set()) == 2
    assert majority_class(frames, held_out={("a", 0)}) == 3


def test_a_trained_memory_model_is_a_propagator_of_the_project(davis_video, engine, tmp_path: Path) -> None:
    """A registered memory VOS model comes first among the propagators and runs through `iter_propagate`."""
    from segloop.platform.vos.memory import LabCellEncoder, MemoryPropagator, MemoryVOS, save_memory_model

    folder = save_memory_model(MemoryVOS(LabCellEncoder()), tmp_path / "vos-model")
    with session_scope(engine) as session:
        artifacts.add_checkpoint(session, "vos", "vit_tiny_patch16_224", str(folder),
                                 project_id=davis_video.project_id, params={"propagation": {"short_side": 64}})
    found = models.project_models(davis_video.project_id, engine)
    assert found.propagators() == [models.VOS_MODEL, models.PIXELS] and found.vos_model_dir == folder
    propagator = models.make_propagator(found, models.VOS_MODEL, vos.PropagationConfig(short_side=64), "cpu")
    assert isinstance(propagator, MemoryPropagator) and propagator.config.short_side == 64
    frames, masks = moving_square_video(5)
    result = vos.propagate(frames, {0: masks[0]}, propagator)
    assert result.masks.shape == (5, 64, 64) and (result.masks[0] == masks[0]).all()


def test_the_propagator_asked_for_or_each_videos_best(davis_video, settings, tmp_path: Path) -> None:
    """One rule for the propagate job, the Label page and `vos propagate --video`: `auto` without weights leaves
    the choice to each video (self-validation), `auto` with weights uses them, another method is built once."""
    import torch

    from segloop.pretrain.backbones import create_backbone

    config = vos.PropagationConfig(short_side=64, size_multiple=16, radius=4)
    assert models.requested_propagator(models.AUTO, None, None, config, "cpu") is None
    weights = tmp_path / "weights.pth"
    torch.save(create_backbone("vit_tiny_patch16_224").state_dict(), weights)
    given = models.requested_propagator(models.AUTO, "vit_tiny_patch16_224", weights, config, "cpu")
    assert isinstance(given, vos.ViTFeaturizer)  # before, the job ignored weights given with auto
    pixels = models.requested_propagator("pixels", None, None, config, "cpu", pixel_patch=8)
    assert models.propagator_for(davis_video.id, config, pixels, settings=settings) == (pixels, None)
    chosen, choice = models.propagator_for(davis_video.id, config, None, settings=settings, device="cpu")
    assert choice.propagator == models.PIXELS and chosen.name == "pixels" and choice.scores
