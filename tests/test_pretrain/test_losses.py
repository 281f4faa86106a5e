"""Loss terms on inputs with hand-derivable values."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from segloop.pretrain.losses import DINOLoss, IBOTPatchLoss, KoLeoLoss, random_walk_loss, sinkhorn_knopp


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.log()).sum(-1).mean()


def test_dino_loss_of_identical_distributions_is_their_entropy():
    logits = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    loss = DINOLoss(16, student_temp=0.1)
    probs = loss.teacher_probs(logits * 0.1 / 0.1, temperature=0.1, method="centering")  # centre is zero
    value = loss([logits], [probs], skip_same_index=False)
    assert torch.allclose(value, entropy(F.softmax(logits / 0.1, dim=-1)), atol=1e-5)


def test_dino_loss_skips_a_global_view_against_itself():
    a, b = torch.zeros(2, 4), torch.tensor([[10.0, 0, 0, 0]] * 2)
    loss = DINOLoss(4, student_temp=1.0)
    uniform = torch.full((2, 4), 0.25)
    one_hot = F.one_hot(torch.zeros(2, dtype=torch.long), 4).float()
    # student 0 (uniform logits) is scored against teacher 1 only, student 1 against teacher 0 only
    value = loss([a, b], [uniform, one_hot])
    expected = (math.log(4) + (-(uniform * F.log_softmax(b, -1)).sum(-1).mean())) / 2
    assert math.isclose(float(value), float(expected), rel_tol=1e-5)


def test_centre_is_an_ema_of_teacher_means():
    loss = DINOLoss(3, center_momentum=0.9)
    loss.update_center(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))
    assert torch.allclose(loss.center, torch.tensor([[0.2, 0.2, 0.2]]))


def test_sinkhorn_knopp_equalises_prototype_marginals():
    logits = torch.randn(64, 8, generator=torch.Generator().manual_seed(1)) * 3
    probs = sinkhorn_knopp(logits, temperature=1.0, iterations=50)
    assert torch.allclose(probs.sum(-1), torch.ones(64), atol=1e-4)
    assert torch.allclose(probs.sum(0), torch.full((8,), 64 / 8), atol=1e-2)


def test_ibot_loss_of_identical_distributions_is_their_entropy_and_weighs_images_equally():
    generator = torch.Generator().manual_seed(2)
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = True  # image 0: one masked patch
    masks[1] = True  # image 1: four masked patches
    logits = torch.randn(5, 10, generator=generator)
    probs = F.softmax(logits / 0.1, dim=-1)
    value = IBOTPatchLoss(10, student_temp=0.1)(logits, probs, masks)
    per_patch = -(probs * probs.log()).sum(-1)
    expected = (per_patch[0] + per_patch[1:].mean()) / 2
    assert torch.allclose(value, expected, atol=1e-5)


def test_koleo_of_two_opposite_points_is_minus_log_two():
    value = KoLeoLoss()(torch.tensor([[1.0, 0.0], [-3.0, 0.0]]))
    assert math.isclose(float(value), -math.log(2.0), rel_tol=1e-6)


def test_koleo_prefers_spread_features():
    spread = KoLeoLoss()(torch.eye(4))
    clustered = KoLeoLoss()(torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.97, 0.25]]))
    assert spread < clustered


def test_random_walk_loss_is_lower_for_true_correspondences_than_for_shuffled_frames():
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(2, 1, 16, 32, generator=generator)
    true_clip = base.repeat(1, 4, 1, 1) + 0.1 * torch.randn(2, 4, 16, 32, generator=generator)
    shuffled = torch.stack([true_clip[:, t, torch.randperm(16, generator=generator)] for t in range(4)], dim=1)
    shuffled[:, 0] = true_clip[:, 0]
    independent = torch.randn(2, 4, 16, 32, generator=generator)
    low = random_walk_loss(true_clip, temperature=0.07)
    assert low < 0.1
    assert low < random_walk_loss(independent, temperature=0.07)
    # patches permuted within frames still return (cycle), so only unrelated frames are worse; check the
    # walk does not depend on the node order of intermediate frames
    assert torch.allclose(random_walk_loss(shuffled, temperature=0.07), low, atol=1e-4)


def test_random_walk_loss_of_identical_orthogonal_frames_is_zero_and_of_uniform_walk_is_log_n():
    frames = torch.eye(8).expand(1, 3, 8, 8)
    assert float(random_walk_loss(frames, temperature=0.01)) < 1e-6
    constant = torch.ones(1, 3, 8, 8)
    assert math.isclose(float(random_walk_loss(constant, temperature=0.07)), math.log(8), rel_tol=1e-5)


def test_edge_dropout_keeps_rows_stochastic():
    from segloop.pretrain.losses.random_walk import transition

    matrix = transition(torch.randn(3, 5, 5), 0.1, edge_dropout=0.3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(matrix.sum(-1), torch.ones(3, 5), atol=1e-5)
