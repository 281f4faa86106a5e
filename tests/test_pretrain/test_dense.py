"""Dense correspondence encoder: local attention, colour-reconstruction loss, save/load, features."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segloop.pretrain.config import ConfigError, DenseConfig, config_from_dict
from segloop.pretrain.dense import (
    DENSE_NAME,
    DenseEncoder,
    DenseLoadError,
    EncoderConfig,
    dense_features,
    dense_masked_attention,
    inference_copy,
    load_dense_encoder,
    local_affinity_kl,
    local_attention,
    reconstruction_loss,
    save_dense_encoder,
)
from segloop.pretrain.dense.colour import lab_cells, rgb_to_lab, uint8_rgb_to_lab
from segloop.pretrain.dense.distil import affinity_distil_loss, cosine_distance, distil_loss, full_colour_student
from segloop.pretrain.dense.encoder import EncoderConfigError
from segloop.pretrain.dense.features import frames_to_lab
from segloop.pretrain.dense.objective import (
    channel_dropout,
    frame_group_loss,
    photometric_jitter,
    shift_correspondence_loss,
    shift_loss,
    shifted_views,
)
from segloop.pretrain.losses.random_walk import random_walk_loss
from segloop.pretrain.schedules import Schedules


@pytest.mark.parametrize("height,width,radius,tile", [(7, 9, 2, 8), (7, 9, 2, 3), (16, 16, 3, 8), (5, 11, 0, 4),
                                                      (10, 13, 4, 5), (3, 3, 5, 8)])
def test_local_attention_equals_the_dense_masked_version(height, width, radius, tile):
    generator = torch.Generator().manual_seed(height * 100 + width)
    query, key = (torch.randn(2, 6, height, width, generator=generator, requires_grad=True) for _ in range(2))
    value = torch.randn(2, 4, height, width, generator=generator)
    local = local_attention(query, key, value, radius, 0.3, tile=tile)
    dense = dense_masked_attention(query, key, value, radius, 0.3)
    torch.testing.assert_close(local, dense, atol=1e-5, rtol=1e-5)
    grads_local = torch.autograd.grad(local.square().sum(), (query, key))
    grads_dense = torch.autograd.grad(dense.square().sum(), (query, key))
    for a, b in zip(grads_local, grads_dense):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def _dense_masked_kl(teacher_query, teacher_key, student_query, student_key, radius, temperature):
    """Reference: KL between the two full (H·W)² affinities, each masked outside the window before its softmax."""
    height, width = teacher_query.shape[2:]
    rows, cols = torch.arange(height).repeat_interleave(width), torch.arange(width).repeat(height)
    near = ((rows[:, None] - rows[None, :]).abs() <= radius) & ((cols[:, None] - cols[None, :]).abs() <= radius)

    def log_affinity(query, key):
        logits = torch.einsum("bcq,bck->bqk", query.flatten(2), key.flatten(2)) / temperature
        return torch.log_softmax(logits.masked_fill(~near, float("-inf")), dim=2)

    teacher, student = log_affinity(teacher_query, teacher_key).detach(), log_affinity(student_query, student_key)
    return (teacher.exp() * (teacher - student)).masked_fill(~near, 0.0).sum(dim=2).mean()


@pytest.mark.parametrize("height,width,radius,tile", [(7, 9, 2, 8), (7, 9, 2, 3), (16, 16, 6, 8), (5, 11, 1, 4),
                                                      (10, 13, 4, 5)])
def test_local_affinity_kl_equals_the_dense_masked_version(height, width, radius, tile):
    generator = torch.Generator().manual_seed(height * 100 + width)
    maps = [torch.randn(2, 6, height, width, generator=generator, requires_grad=True) for _ in range(4)]
    local = local_affinity_kl(*maps, radius, 0.3, tile=tile)
    dense = _dense_masked_kl(*maps, radius, 0.3)
    assert local.item() > 0.01
    torch.testing.assert_close(local, dense, atol=1e-5, rtol=1e-5)
    grads_local = torch.autograd.grad(local, maps[2:])
    grads_dense = torch.autograd.grad(dense, maps[2:])
    for a, b in zip(grads_local, grads_dense):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_local_affinity_kl_is_zero_for_equal_affinities_and_sends_no_gradient_to_the_teacher():
    generator = torch.Generator().manual_seed(3)
    query, key = (torch.randn(2, 4, 6, 7, generator=generator, requires_grad=True) for _ in range(2))
    same = local_affinity_kl(query, key, 2.0 * query.detach(), 0.5 * key.detach(), radius=2, temperature=0.5)
    assert same.item() == pytest.approx(0.0, abs=1e-6)  # the logits are equal: q·k is scale-matched
    student = torch.randn(2, 4, 6, 7, generator=generator, requires_grad=True)
    local_affinity_kl(query, key, student, student, radius=2, temperature=0.5).backward()
    assert query.grad is None and key.grad is None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="student query"):
        local_affinity_kl(query, key, student[:, :, :5], student, radius=2, temperature=0.5)


def test_local_attention_only_sees_its_window():
    value = torch.zeros(1, 1, 9, 9)
    value[0, 0, 0, 0] = 1.0  # a marker in the corner: invisible from the centre with radius 2
    features = torch.ones(1, 2, 9, 9)
    out = local_attention(features, features, value, radius=2, temperature=1.0)
    assert out[0, 0, 4, 4] == 0 and out[0, 0, 1, 1] == pytest.approx(1 / 16)  # corner-adjacent: 4x4 window


@pytest.mark.parametrize("height,width,radius,tile", [(7, 9, 2, 8), (10, 13, 4, 5), (3, 3, 5, 8)])
def test_local_attention_over_several_references_equals_the_dense_masked_version(height, width, radius, tile):
    generator = torch.Generator().manual_seed(height * 100 + width)
    query = torch.randn(2, 6, height, width, generator=generator, requires_grad=True)
    key = torch.randn(2, 3, 6, height, width, generator=generator, requires_grad=True)
    value = torch.randn(2, 3, 4, height, width, generator=generator)
    local = local_attention(query, key, value, radius, 0.3, tile=tile)
    torch.testing.assert_close(local, dense_masked_attention(query, key, value, radius, 0.3), atol=1e-5, rtol=1e-5)
    grads_local = torch.autograd.grad(local.square().sum(), (query, key))
    grads_dense = torch.autograd.grad(dense_masked_attention(query, key, value, radius, 0.3).square().sum(),
                                      (query, key))
    for a, b in zip(grads_local, grads_dense):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_one_softmax_spans_every_reference():
    query, value = torch.ones(1, 2, 5, 5), torch.stack([torch.zeros(1, 5, 5), torch.ones(1, 5, 5)])[None]
    key = torch.stack([torch.ones(2, 5, 5), torch.ones(2, 5, 5)])[None]  # two equally similar references
    out = local_attention(query, key, value, radius=1, temperature=1.0)
    torch.testing.assert_close(out, torch.full((1, 1, 5, 5), 0.5))  # half the weight on each reference


def test_local_attention_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="same grid"):
        local_attention(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4), 1, 0.1)
    with pytest.raises(ValueError, match="one map per key map"):
        local_attention(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 4, 4), torch.zeros(1, 3, 1, 4, 4), 1, 0.1)


def test_identity_affinity_reconstructs_exactly():
    generator = torch.Generator().manual_seed(0)
    codes = torch.eye(12)[torch.randperm(12, generator=generator)].T.reshape(1, 12, 3, 4)  # one-hot per cell
    values = torch.randn(1, 3, 3, 4, generator=generator)
    loss = reconstruction_loss(codes, codes, values, values, radius=2, temperature=0.01)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


def test_the_matching_reference_is_found_among_several():
    generator = torch.Generator().manual_seed(0)
    codes = torch.eye(12)[torch.randperm(12, generator=generator)].T.reshape(1, 12, 3, 4)
    other = -codes  # a reference whose every cell is dissimilar to every query
    values = torch.randn(1, 3, 3, 4, generator=generator)
    noise = torch.randn(1, 3, 3, 4, generator=generator)
    keys, refs = torch.stack([other, codes], dim=1), torch.stack([noise, values], dim=1)
    both = reconstruction_loss(codes, keys, values, refs, radius=2, temperature=0.01)
    assert float(both) == pytest.approx(0.0, abs=1e-6)
    assert float(reconstruction_loss(codes, keys[:, :1], values, refs[:, :1], radius=2, temperature=0.01)) > 0.1


def test_reconstruction_loss_matches_a_hand_computation():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # cells: [1, 0] and [0, 1]
    key = query.clone()
    ref_values = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2)
    target_values = torch.tensor([0.0, 0.0]).reshape(1, 1, 1, 2)
    # cell 0 weights softmax([1, 0]) -> predicts 1/(1+e); cell 1 softmax([0, 1]) -> predicts e/(1+e)
    predicted = [1 / (1 + math.e), math.e / (1 + math.e)]
    huber = [abs(p) - 0.05 if abs(p) >= 0.1 else 0.5 * p * p / 0.1 for p in predicted]
    loss = reconstruction_loss(query, key, target_values, ref_values, radius=1, temperature=1.0)
    assert float(loss) == pytest.approx(sum(huber) / 2, rel=1e-5)


def _tiny_encoder_and_groups(count: int) -> tuple[DenseEncoder, torch.Tensor]:
    """A small encoder in eval mode and two random Lab groups of `count` 32x32 frames."""
    torch.manual_seed(0)
    encoder = DenseEncoder(EncoderConfig(width=8, blocks=1, dim=16)).eval()
    return encoder, rgb_to_lab(torch.rand(2 * count, 3, 32, 32)).unflatten(0, (2, count))


def _loss_config(**changes) -> DenseConfig:
    """The dense settings of these loss tests: radius 2, temperature 0.1, no colour dropout unless changed."""
    return DenseConfig(**{"radius": 2, "temperature": 0.1, "channel_dropout": 0.0, **changes})


def test_group_loss_of_two_frames_is_the_symmetric_pair_loss_and_more_frames_train_the_encoder():
    encoder, lab = _tiny_encoder_and_groups(3)
    features = F.normalize(encoder(lab[:, :2].flatten(0, 1)), dim=1).unflatten(0, (2, 2))
    values = lab_cells(lab[:, :2].flatten(0, 1), 8, 2).unflatten(0, (2, 2))
    both = [reconstruction_loss(features[:, t], features[:, 1 - t], values[:, t], values[:, 1 - t], 2, 0.1)
            for t in (0, 1)]
    torch.testing.assert_close(frame_group_loss(encoder, lab[:, :2], _loss_config()), (both[0] + both[1]) / 2)
    for group in (lab[:, :2], lab):
        encoder.zero_grad()
        loss = frame_group_loss(encoder.train(), group, _loss_config(channel_dropout=1.0))
        loss.backward()
        assert torch.isfinite(loss) and encoder.project.weight.grad.abs().sum() > 0


def test_cycle_weight_adds_the_random_walk_over_the_frames_cells():
    encoder, lab = _tiny_encoder_and_groups(3)
    cells = F.normalize(encoder(lab.flatten(0, 1)), dim=1).unflatten(0, (2, 3)).flatten(3).transpose(2, 3)
    plain = frame_group_loss(encoder, lab, _loss_config())
    with_cycle = frame_group_loss(encoder, lab, _loss_config(cycle_weight=0.5), torch.Generator().manual_seed(1))
    walk = random_walk_loss(cells, edge_dropout=0.1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(with_cycle, plain + 0.5 * walk)


def test_shifted_views_cut_the_same_pixels_whole_cells_apart():
    frames = torch.arange(2 * 3 * 48 * 56, dtype=torch.float32).view(2, 3, 48, 56)
    for seed in range(5):
        view_a, view_b, (dy, dx) = shifted_views(frames, 8, 2, torch.Generator().manual_seed(seed))
        assert view_a.shape == view_b.shape == (2, 3, 32, 40) and max(abs(dy), abs(dx)) <= 2
        rows, cols = slice(max(dy, 0) * 8, 32 + min(dy, 0) * 8), slice(max(dx, 0) * 8, 40 + min(dx, 0) * 8)
        rows_b = slice(max(-dy, 0) * 8, 32 + min(-dy, 0) * 8)
        cols_b = slice(max(-dx, 0) * 8, 40 + min(-dx, 0) * 8)
        assert torch.equal(view_b[..., rows_b, cols_b], view_a[..., rows, cols])  # b(i, j) = a(i + dy, j + dx)
    with pytest.raises(ValueError, match="does not fit"):
        shifted_views(frames, 8, 6)


def test_shift_loss_is_near_zero_for_matching_features_and_high_for_the_wrong_shift():
    features_a = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    features_b = torch.roll(features_a, shifts=(-1, -2), dims=(2, 3))  # b(i, j) = a(i + 1, j + 2)
    right = shift_correspondence_loss(features_a, features_b, (1, 2), radius=3, temperature=0.01)
    wrong = shift_correspondence_loss(features_a, features_b, (0, 0), radius=3, temperature=0.01)
    assert right < 1e-3 and wrong > 5.0
    uniform = shift_correspondence_loss(torch.ones(1, 4, 5, 5), torch.ones(1, 4, 5, 5), (0, 0), 1, 0.1)
    corner, edge, inner = math.log(4), math.log(6), math.log(9)  # uniform affinity over each cell's window
    assert uniform.item() == pytest.approx((4 * corner + 12 * edge + 9 * inner) / 25, rel=1e-5)
    encoder, lab = _tiny_encoder_and_groups(2)
    with_shift = frame_group_loss(encoder, lab, _loss_config(shift_weight=0.5, shift_cells=2),
                                  torch.Generator().manual_seed(1))
    term = shift_loss(encoder, lab.flatten(0, 1), 2, 2, 0.1, 0.0, 0.2, torch.Generator().manual_seed(1))
    torch.testing.assert_close(with_shift, frame_group_loss(encoder, lab, _loss_config()) + 0.5 * term)


def test_cosine_distance_is_one_minus_the_cosine_per_cell_with_no_gradient_to_the_target():
    cells = torch.randn(2, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    target = cells.clone().requires_grad_(True)
    features = (2.5 * cells).requires_grad_(True)
    assert cosine_distance(features, target).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_distance(-cells, cells).item() == pytest.approx(2.0, abs=1e-6)
    first, second = torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
    first[:, 0], second[:, 1] = 1.0, 3.0
    assert cosine_distance(first, second).item() == pytest.approx(1.0, abs=1e-6)
    cosine_distance(torch.randn(2, 8, 3, 3) * features, target).backward()
    assert target.grad is None and features.grad.abs().sum() > 0


@pytest.mark.parametrize("target", ["features", "affinity"])
def test_distillation_teaches_a_one_pass_copy_the_three_view_mean_and_leaves_the_teacher_alone(target):
    torch.manual_seed(0)
    teacher = DenseEncoder(EncoderConfig(width=8, blocks=1, dim=16)).eval()
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    student = full_colour_student(teacher)
    assert not student.config.dropout_views and not student.training and teacher.config == EncoderConfig(
        width=8, blocks=1, dim=16)
    lab = rgb_to_lab(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        torch.testing.assert_close(student.learned_features(lab), teacher.learned_features(lab))
        target_features = teacher.dropout_view_features(lab)
    groups = lab.unflatten(0, (2, 2))  # two videos of two frames
    if target == "features":
        loss = lambda: distil_loss(student, teacher, lab)  # noqa: E731
        expected = cosine_distance(teacher(lab), target_features)
    else:
        loss = lambda: affinity_distil_loss(student, teacher, groups, radius=2, temperature=0.1)  # noqa: E731
        views, plain = target_features.unflatten(0, (2, 2)), F.normalize(teacher(lab), dim=1).unflatten(0, (2, 2))
        expected = local_affinity_kl(views.flatten(0, 1), views.flip(1).flatten(0, 1), plain.flatten(0, 1),
                                     plain.flip(1).flatten(0, 1), 2, 0.1)  # each frame attends to the other
    start = loss()
    assert start.item() == pytest.approx(expected.item(), rel=1e-5) and start > 1e-3
    optimiser = torch.optim.Adam(student.parameters(), lr=1e-3)
    for _ in range(60):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    assert loss() < 0.3 * start
    assert all(p.grad is None for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_photometric_jitter_changes_each_frame_within_its_strength():
    lab = torch.zeros(8, 3, 2, 2) + torch.tensor([0.2, 0.1, -0.1]).view(1, 3, 1, 1)
    jittered = photometric_jitter(lab, 0.2, torch.Generator().manual_seed(0))
    lightness = jittered[:, 0, 0, 0]
    assert lightness.unique().numel() == 8 and ((lightness - 0.2).abs() <= 0.2 * 0.2 + 0.1 + 1e-6).all()
    assert ((jittered[:, 1, 0, 0] - 0.1).abs() <= 0.1 * 0.2 + 1e-6).all()
    assert torch.equal(photometric_jitter(lab, 0.0), lab)


def test_channel_dropout_zeroes_one_channel_per_frame():
    lab = torch.ones(6, 3, 2, 2)
    dropped = channel_dropout(lab, 1.0, torch.Generator().manual_seed(0))
    assert (dropped.sum(dim=(2, 3)) == 0).sum(dim=1).tolist() == [1] * 6
    assert torch.equal(channel_dropout(lab, 0.0), lab)


def test_rgb_to_lab_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    ours = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    ours = ours * 50.0 + np.array([50.0, 0.0, 0.0], dtype=np.float32)
    np.testing.assert_allclose(ours, expected, atol=0.5)
    assert lab_cells(torch.zeros(1, 3, 16, 24), 8, 2).shape == (1, 12, 2, 3)


def test_uint8_lab_table_matches_the_float_conversion_on_every_value():
    """The 256-entry linearisation table gives the float path's Lab for every uint8 value, and rejects floats."""
    values = torch.arange(256, dtype=torch.uint8)
    rgb = torch.stack([values, values.flip(0), values.roll(7)]).view(1, 3, 16, 16)
    torch.testing.assert_close(uint8_rgb_to_lab(rgb), rgb_to_lab(rgb.float() / 255.0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="uint8"):
        uint8_rgb_to_lab(rgb.float())


def test_features_shape_stride_and_unit_norm():
    frames = np.random.default_rng(0).integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)
    for stride in (4, 8):
        encoder = DenseEncoder(EncoderConfig(stride=stride, width=8, blocks=1, dim=16))
        features = dense_features(encoder, list(frames), batch_size=2)
        assert features.shape == (3, 16, 48 // stride, 64 // stride)
        torch.testing.assert_close(features.norm(dim=1), torch.ones(3, 48 // stride, 64 // stride))
    fused = dense_features(encoder, frames, skip_weight=0.5)
    assert fused.shape[1] == 16 + 3 * 4 + 1
    with pytest.raises(ValueError, match="multiple of the encoder's stride"):
        dense_features(encoder, frames[:, :45])


@pytest.mark.parametrize(("stride", "blocks", "views"), [(4, 1, False), (8, 2, False), (8, 1, True)])
def test_inference_copy_folds_batch_norm_without_changing_the_features(stride, blocks, views):
    """The folded copy gives the trained encoder's features (batch-norm statistics learnt, not the defaults), has
    no batch norm left and no trainable parameter; the encoder itself keeps its batch norms."""
    torch.manual_seed(0)
    encoder = DenseEncoder(EncoderConfig(stride=stride, width=8, blocks=blocks, dim=16, dropout_views=views))
    for _ in range(3):  # learn running statistics that differ from the defaults
        encoder.train()(rgb_to_lab(torch.rand(4, 3, 32, 32)) * 2.0 + 0.3)
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.5, 0.5)
    frames = np.random.default_rng(1).integers(0, 255, (3, 32, 48, 3), dtype=np.uint8)
    fused = inference_copy(encoder)
    torch.testing.assert_close(dense_features(fused, frames), dense_features(encoder, frames), atol=1e-5, rtol=0)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())


def test_dropout_views_average_the_three_one_channel_dropped_inputs():
    torch.manual_seed(0)
    plain = DenseEncoder(EncoderConfig(width=8, blocks=1, dim=16)).eval()
    views = DenseEncoder(EncoderConfig(width=8, blocks=1, dim=16, dropout_views=True)).eval()
    views.load_state_dict(plain.state_dict())
    lab = rgb_to_lab(torch.rand(2, 3, 32, 40))
    with torch.no_grad():
        by_hand = sum(F.normalize(plain(lab * (1 - torch.eye(3)[c].view(1, 3, 1, 1))), dim=1) for c in range(3))
        torch.testing.assert_close(views.features(lab), F.normalize(by_hand, dim=1))
        torch.testing.assert_close(plain.features(lab), F.normalize(plain(lab), dim=1))
        assert not torch.allclose(views.features(lab), plain.features(lab))
    frames = np.random.default_rng(2).integers(0, 255, (3, 32, 40, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = views.features(frames_to_lab(frames))  # NCHW; dense_features runs the encoder NHWC
    torch.testing.assert_close(dense_features(views, frames, batch_size=2), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(EncoderConfigError, match="dropout_views"):
        EncoderConfig(dropout_views="yes")
    from segloop.pretrain.model import encoder_config

    assert not encoder_config(config_from_dict({}).dense).dropout_views
    assert encoder_config(config_from_dict({"dense": {"inference_views": True}}).dense).dropout_views


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = DenseEncoder(EncoderConfig(width=8, blocks=1, dim=16, skip_weight=0.25, dropout_views=True))
    encoder.train()
    encoder(torch.randn(2, 3, 32, 32))  # move the batch-norm running statistics away from their init
    path = save_dense_encoder(encoder, tmp_path)
    assert path == tmp_path / DENSE_NAME and not list(tmp_path.glob("*.tmp"))
    loaded = load_dense_encoder(tmp_path)
    assert loaded.config == encoder.config and not loaded.training
    frames = np.random.default_rng(1).integers(0, 255, (2, 32, 40, 3), dtype=np.uint8)
    torch.testing.assert_close(dense_features(loaded, frames), dense_features(encoder, frames))
    assert load_dense_encoder(path, skip_weight=0.0).config.skip_weight == 0.0
    older = torch.load(path, weights_only=True)
    del older["config"]["dropout_views"]  # written before the option existed: full-colour inference, as then
    torch.save(older, tmp_path / "older.pth")
    assert not load_dense_encoder(tmp_path / "older.pth").config.dropout_views


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(DenseLoadError, match="no dense encoder here"):
        load_dense_encoder(tmp_path)
    bad = tmp_path / DENSE_NAME
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DenseLoadError, match=str(bad)):
        load_dense_encoder(tmp_path)
    torch.save({"weights": {}}, bad)
    with pytest.raises(DenseLoadError, match="format tag"):
        load_dense_encoder(bad)


def test_bad_settings_are_named():
    with pytest.raises(EncoderConfigError, match="stride"):
        EncoderConfig(stride=16)
    with pytest.raises(ConfigError, match="dense.crop_size"):
        config_from_dict({"dense": {"crop_size": 100}})
    with pytest.raises(ConfigError, match="dense.min_gap"):
        config_from_dict({"dense": {"min_gap": 0}})
    with pytest.raises(ConfigError, match="dense.shift_cells"):
        config_from_dict({"dense": {"shift_weight": 0.1, "shift_cells": 7}})
    with pytest.raises(ConfigError, match="dense.distil_share"):
        config_from_dict({"dense": {"distil_share": 0.7}})
    with pytest.raises(ConfigError, match="dense.distil_target"):
        config_from_dict({"dense": {"distil_target": "logits"}})


def test_time_budget_sets_the_schedule_horizon():
    config = config_from_dict({"run": {"steps": 10_000, "max_minutes": 1}, "optim": {"min_lr": 0.0}})
    schedules = Schedules(config)
    assert schedules.at(7, progress=0.5).lr == pytest.approx(schedules.at(5_000).lr)
    assert schedules.at(3, progress=1.0).lr == pytest.approx(0.0, abs=1e-12)
    assert schedules.at(0, progress=0.0).lr == 0.0  # warm-up starts from zero
