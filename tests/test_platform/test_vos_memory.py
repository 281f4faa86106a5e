"""Memory VOS model: read shapes and locality, save/load, training, propagation (tiny synthetic videos)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segloop.platform.vos import memory as mem
from segloop.platform.vos import memory_train as mt

from ..conftest import invoke_segloop as cli


def moving_square_video(count: int = 8, size: tuple[int, int] = (64, 96), step: int = 3) -> tuple[np.ndarray, list]:
    """Frames (T, H, W, 3) uint8 with a red square moving right and a static green block, and their label maps."""
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(90, 8, (count, *size, 3)), 0, 255).astype(np.uint8)
    masks = []
    for t in range(count):
        mask = np.zeros(size, np.uint8)
        mask[16:40, 8 + step * t:32 + step * t] = 1
        mask[44:60, 64:88] = 2
        frames[t][mask == 1] = (210, 40, 40)
        frames[t][mask == 2] = (40, 200, 60)
        masks.append(mask)
    return frames, masks


@pytest.fixture(scope="module")
def model() -> mem.MemoryVOS:
    torch.manual_seed(0)
    return mem.MemoryVOS(mem.LabCellEncoder(stride=8, cells=2), mem.MemoryConfig(hidden=8, value_dim=4, skip_dim=4))


@pytest.mark.parametrize("objects,memory_frames", [(1, 1), (2, 3), (3, 5)])
def test_memory_read_shapes(model, objects, memory_frames):
    frames, masks = moving_square_video(memory_frames + 1)
    features = model.features(frames)
    keys = model.keys(features)
    grid = tuple(features.shape[-2:])
    assert features.shape == (memory_frames + 1, model.encoder.dim, 8, 12)
    assert keys.shape == (memory_frames + 1, model.encoder.dim, 8, 12)
    assert torch.allclose(keys.norm(dim=1), torch.ones(1), atol=1e-5)
    object_masks = torch.rand(objects, *grid)
    values = torch.stack([model.values(features[t:t + 1], object_masks) for t in range(memory_frames)])
    assert values.shape == (memory_frames, objects, 1 + model.config.value_dim, *grid)
    readout = model.read(keys[-1:], keys[:-1], values)
    assert readout.shape == (objects, 1 + model.config.value_dim, *grid)
    skip = model.frame_skip(frames[-1:])
    assert skip.shape == (1, model.config.skip_dim, 64 // 4, 96 // 4)
    log_probs = model.segment(keys[-1:], features[-1:], skip, keys[:-1], values)
    assert log_probs.shape == (objects + 1, 16, 24)
    assert torch.allclose(log_probs.exp().sum(0), torch.ones(1), atol=1e-4)


def test_memory_read_equals_dense_masked_softmax_over_all_memory_frames():
    torch.manual_seed(1)
    query = F.normalize(torch.randn(2, 6, 9, 11), dim=1)
    keys = F.normalize(torch.randn(2, 3, 6, 9, 11), dim=2)
    values = torch.randn(2, 3, 4, 9, 11)
    radius, scale = 2, 7.0
    out = mem.memory_read(query, keys, values, radius, scale, tile=4)
    rows = torch.arange(9).repeat_interleave(11)
    cols = torch.arange(11).repeat(9)
    near = ((rows[:, None] - rows[None, :]).abs() <= radius) & ((cols[:, None] - cols[None, :]).abs() <= radius)
    logits = torch.einsum("bcq,btck->bqtk", query.flatten(2), keys.flatten(3)) * scale
    logits = logits.masked_fill(~near[None, :, None, :], float("-inf")).flatten(2)
    weights = torch.softmax(logits, dim=-1)
    expected = torch.einsum("bqk,bdk->bdq", weights, values.permute(0, 2, 1, 3, 4).flatten(2)).view(2, 4, 9, 11)
    assert torch.allclose(out, expected, atol=1e-5)


def test_memory_read_is_local():
    """A query cell's readout depends only on memory cells within `radius` of its position."""
    torch.manual_seed(2)
    query = F.normalize(torch.randn(1, 4, 12, 12), dim=1)
    keys = F.normalize(torch.randn(1, 2, 4, 12, 12), dim=2)
    values = torch.randn(1, 2, 3, 12, 12)
    radius = 2
    before = mem.memory_read(query, keys, values, radius, 10.0, tile=5)
    changed_keys, changed_values = keys.clone(), values.clone()
    changed_keys[..., 9:, 9:] = F.normalize(torch.randn(1, 2, 4, 3, 3), dim=2)
    changed_values[..., 9:, 9:] = 100.0
    after = mem.memory_read(query, changed_keys, changed_values, radius, 10.0, tile=5)
    rows, cols = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    far = (rows < 9 - radius) | (cols < 9 - radius)
    assert torch.equal(before[..., far], after[..., far])
    assert not torch.allclose(before[..., ~far], after[..., ~far])


def test_memory_read_topk_keeps_only_best_keys():
    query = torch.ones(1, 1, 1, 3)
    keys = torch.tensor([0.1, 0.5, 0.9]).view(1, 1, 1, 1, 3)
    values = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 1, 3)
    out = mem.memory_read(query, keys, values, radius=2, scale=1000.0, topk=1)
    assert torch.allclose(out, torch.full((1, 1, 1, 3), 3.0))


def test_soft_aggregation_gives_a_distribution():
    probs = torch.tensor([[[0.9, 0.1]], [[0.2, 0.05]]])
    log_probs = mem.soft_aggregate(probs)
    assert log_probs.shape == (3, 1, 2)
    assert torch.allclose(log_probs.exp().sum(0), torch.ones(1, 2), atol=1e-5)
    assert log_probs.exp()[:, 0, 0].argmax() == 1 and log_probs.exp()[:, 0, 1].argmax() == 0


def _trained_copy(model: mem.MemoryVOS) -> mem.MemoryVOS:
    """A model whose zero-initialised output layer is perturbed, so save/load is tested on non-trivial weights."""
    torch.manual_seed(3)
    copy = mem.MemoryVOS(model.encoder, model.config)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        copy.out.weight.normal_(0, 0.1)
        copy.key_proj.weight.add_(0.05 * torch.randn_like(copy.key_proj.weight))
    return copy.eval()


def test_save_load_round_trip_gives_identical_outputs(model, tmp_path):
    frames, masks = moving_square_video()
    trained = _trained_copy(model)
    folder = mem.save_memory_model(trained, tmp_path / "model", extra={"note": "test"})
    assert {p.name for p in folder.iterdir()} == {mem.CONFIG_NAME, mem.WEIGHTS_NAME}
    loaded = mem.load_memory_model(folder)
    settings = mem.MemoryPropagationConfig(short_side=64, n_last=2)
    first = mem.propagate_with_memory(frames, {0: masks[0]}, trained, settings)
    second = mem.propagate_with_memory(frames, {0: masks[0]}, loaded, settings)
    assert np.array_equal(first.masks, second.masks)
    assert first.confidences == second.confidences
    for name, value in trained.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name


def test_missing_or_corrupt_model_file_is_named(model, tmp_path):
    folder = mem.save_memory_model(model, tmp_path / "model")
    weights, settings = folder / mem.WEIGHTS_NAME, folder / mem.CONFIG_NAME
    saved = weights.read_bytes()
    weights.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(mem.MemoryModelError, match=mem.WEIGHTS_NAME):
        mem.load_memory_model(folder)
    weights.unlink()
    with pytest.raises(mem.MemoryModelError, match=f"{mem.WEIGHTS_NAME}: missing"):
        mem.load_memory_model(folder)
    weights.write_bytes(saved)
    settings.write_text("{not json")
    with pytest.raises(mem.MemoryModelError, match=f"{mem.CONFIG_NAME}: corrupt"):
        mem.load_memory_model(folder)
    settings.unlink()
    with pytest.raises(mem.MemoryModelError, match=f"{mem.CONFIG_NAME}: missing"):
        mem.load_memory_model(folder)
    with pytest.raises(mem.MemoryModelError, match="no such model folder"):
        mem.load_memory_model(tmp_path / "absent")


def test_training_reduces_the_loss_on_a_moving_square():
    frames, masks = moving_square_video(count=6)
    torch.manual_seed(0)
    model = mem.MemoryVOS(mem.LabCellEncoder(), mem.MemoryConfig(hidden=8, value_dim=4, skip_dim=4))
    config = mt.MemoryTrainConfig(short_side=64, crop=64, steps=1, batch_size=2, lr=1e-2, seed=0)
    items = mt.labelled_frames({"v": frames}, {"v": {0: masks[0], 5: masks[5]}}, config.short_side, 8)
    rng = np.random.default_rng(0)
    samples = [mt.make_sample(items, {"v": [0, 1]}, config, 8, rng) for _ in range(4)]
    samples = [s for s in samples if s is not None]
    assert samples

    def total_loss() -> float:
        with torch.no_grad():
            return float(sum(mt.sample_loss(model, s, 3, np.random.default_rng(0)) for s in samples))

    before = total_loss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = torch.stack([mt.sample_loss(model, s, 3, np.random.default_rng(0)) for s in samples]).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert total_loss() < before


def test_train_memory_model_runs_and_records_losses():
    frames, masks = moving_square_video(count=6)
    config = mt.MemoryTrainConfig(short_side=64, crop=64, steps=3, batch_size=2)
    result = mt.train_memory_model({"v": frames}, {"v": {0: masks[0], 5: masks[5]}}, mem.LabCellEncoder(), config,
                                   mem.MemoryConfig(hidden=8, value_dim=4, skip_dim=4))
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    assert result.labelled_frames == 2 and not result.model.training
    assert result.learning_rates[0] > 0 and result.learning_rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_schedule_fraction_is_the_nearer_end_of_steps_and_time():
    assert mt.schedule_fraction(25, 100, 10.0, 100.0) == pytest.approx(0.25)
    assert mt.schedule_fraction(25, 100, 50.0, 100.0) == pytest.approx(0.5)
    assert mt.schedule_fraction(100, 100, 10.0, 100.0) == 1.0
    assert mt.schedule_fraction(10, 100, 500.0, 100.0) == 1.0


def test_training_cut_by_the_time_limit_ends_annealed():
    frames, masks = moving_square_video(count=6)
    config = mt.MemoryTrainConfig(short_side=64, crop=64, steps=500, batch_size=1, max_seconds=1e-6)
    result = mt.train_memory_model({"v": frames}, {"v": {0: masks[0], 5: masks[5]}}, mem.LabCellEncoder(), config,
                                   mem.MemoryConfig(hidden=8, value_dim=4, skip_dim=4))
    assert len(result.losses) == 1
    assert result.learning_rates == [pytest.approx(0.0, abs=1e-12)]


def test_training_refuses_background_only_labels():
    frames, _ = moving_square_video(count=3)
    with pytest.raises(mem.MemoryModelError, match="no labelled frame holds an object"):
        mt.train_memory_model({"v": frames}, {"v": {0: np.zeros((64, 96), np.uint8)}}, mem.LabCellEncoder(),
                              mt.MemoryTrainConfig(short_side=64, crop=64, steps=1))


def test_deform_keeps_mask_labels_and_size():
    frames, masks = moving_square_video(count=1)
    image, mask = mt.deform(frames[0], masks[0], mt.MemoryTrainConfig(), np.random.default_rng(0))
    assert image.shape == frames[0].shape and mask.shape == masks[0].shape
    assert set(np.unique(mask)) <= {0, 1, 2} and not np.array_equal(mask, masks[0])


@pytest.mark.parametrize("keyframes", [[0], [3], [0, 7], [2, 5]])
def test_propagate_with_memory_one_mask_per_frame_keyframes_unchanged(model, keyframes):
    frames, masks = moving_square_video()
    result = mem.propagate_with_memory(frames, {k: masks[k] for k in keyframes}, model,
                                       mem.MemoryPropagationConfig(short_side=64, n_last=2))
    assert result.masks.shape == (len(frames), 64, 96) and result.masks.dtype == np.uint8
    assert len(result.confidences) == len(frames)
    for k in keyframes:
        assert np.array_equal(result.masks[k], masks[k]) and result.confidences[k]["keyframe"]
    assert set(np.unique(result.masks)) <= {0, 1, 2}
    between = [t for t in range(len(frames)) if t not in keyframes]
    iou = np.mean([np.logical_and(result.masks[t] == 1, masks[t] == 1).sum()
                   / np.logical_or(result.masks[t] == 1, masks[t] == 1).sum() for t in between])
    assert iou > 0.5


def test_propagate_with_memory_rejects_bad_keyframes(model):
    frames, masks = moving_square_video(count=3)
    with pytest.raises(ValueError, match="keyframe 5 outside"):
        mem.propagate_with_memory(frames, {5: masks[0]}, model)


def test_encoder_featurizer_feeds_plain_propagation():
    from segloop.platform.vos import propagation as vos

    frames, masks = moving_square_video()
    config = vos.PropagationConfig(short_side=64, size_multiple=8, radius=4)
    featurizer = mem.EncoderFeaturizer(mem.LabCellEncoder(), config)
    features = featurizer(list(frames[:2]))
    assert features.shape == (2, 8 * 12, mem.LabCellEncoder().dim)
    result = vos.propagate(frames, {0: masks[0]}, featurizer, config)
    assert result.masks.shape == (len(frames), 64, 96)


def _davis_root(tmp_path, count: int = 10):
    """A DAVIS-layout root holding one two-object sequence with a mask for every frame."""
    from .test_vos import write_davis_root

    frames, masks = moving_square_video(count)
    root = tmp_path / "root"
    write_davis_root(root, "sq", frames, np.stack(masks), style="palette")
    return root


def test_finetune_vos_on_a_davis_root_records_the_run_and_serves_propagation(data_dir, tmp_path):
    """`finetune vos --frames ROOT --out DIR` prints plain vs model J&F; the folder records the training and those
    scores; `vos propagate --model DIR` uses it."""
    import json

    root, out = _davis_root(tmp_path), tmp_path / "model"
    result = cli("finetune", "vos", "--frames", str(root), "--keyframes", "0,9", "--steps", "3",
                 "--prop-short-side", "64", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / mem.CONFIG_NAME).read_text())["extra"]
    assert (record["steps"], len(record["losses"]), record["keyframes"]) == (3, 3, "0,9")
    assert set(record["scores"]) == {"J&F_plain", "J&F_model"}
    for value in record["scores"].values():
        assert 0.0 <= value <= 1.0 and f"{value:.4f}" in result.output
    assert "trained 3 of 3 steps" in result.output
    predicted = cli("vos", "propagate", str(root), "--model", str(out), "--keyframes", "0",
                    "--out", str(tmp_path / "pred"))
    assert predicted.exit_code == 0, predicted.output
    assert len(list((tmp_path / "pred" / "sq").glob("*.png"))) == 10


def test_finetune_vos_on_a_root_with_nothing_left_to_score_says_so(data_dir, tmp_path):
    """Keyframes covering every frame but the first and last (which the protocol never scores) failed the command
    after training with 'no frames left to score', leaving the model folder; the model is saved and the command
    says it could not be scored."""
    root, out = _davis_root(tmp_path, count=4), tmp_path / "model"
    result = cli("finetune", "vos", "--frames", str(root), "--keyframes", "0,1,2", "--steps", "2",
                 "--prop-short-side", "64", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "not scored: no annotated frame is left" in " ".join(result.output.split())
    assert (out / mem.CONFIG_NAME).is_file()


@pytest.mark.parametrize("problem", ["no-out", "keyframe-without-mask", "one-keyframe-without-mask",
                                     "keyframe-outside", "prop-short-side"])
def test_finetune_vos_on_a_davis_root_refuses_bad_input_by_name(data_dir, tmp_path, problem):
    """Without --out, when a chosen keyframe has no mask (as `vos propagate` refuses it) or lies outside a sequence,
    or when the scoring's --prop-short-side is too small for the frames, the command fails before training naming
    the option, the missing file or the sequence, and writes no model."""
    from segloop.platform.core.davis import DavisLayout

    root, out = _davis_root(tmp_path, count=6), tmp_path / "model"
    args = ["finetune", "vos", "--frames", str(root), "--steps", "2", "--keyframes", "3"]
    if problem == "no-out":
        expected = "--out"
    elif problem == "prop-short-side":  # the scoring after training could not have propagated at that size
        args += ["--out", str(out), "--prop-short-side", "16"]
        expected = "--prop-short-side 16: sq: frame"
    elif problem == "keyframe-outside":
        args = [a if a != "3" else "9" for a in args] + ["--out", str(out)]
        expected = "sq (6 frames): keyframes '9': frame(s) [9] outside 0..5"
    else:
        DavisLayout(root).mask_path("sq", 3).unlink()
        if problem == "one-keyframe-without-mask":
            args = [a if a != "3" else "0,3" for a in args]
        args += ["--out", str(out)]
        expected = "00003.png: keyframe annotation not found"
    result = cli(*args)
    assert result.exit_code != 0 and expected in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()
    assert "%" not in result.output.split("Error")[0]  # no progress bar is drawn before the refusal
