"""Diversity selection: greedy k-center (coreset / farthest-point traversal).

Distances are Euclidean on the vectors as given (L2-normalise them first for cosine). The engines
keep, for every point, the squared distance to its nearest chosen center as a float32 running
minimum, with squared norms precomputed, so memory stays O(N) beyond the embedding matrix and no
N x N matrix is ever formed. On CPU the lazy engine refreshes only the rows that could be the next
pick (blocked matrix products against the centers they have not seen), which gives exactly the
picks of a full update at a fraction of the cost; on a CUDA GPU (torch) every row is updated with
one matrix-vector product per pick.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import numpy as np

from segloop.platform.core.device import DeviceError, cuda_available
from segloop.platform.core.device import resolve_device as resolve_torch_device
from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.registry import Rule, register
from segloop.selectors.types import CandidatePool, Pick, SelectorError, all_finite

DEVICES = ("auto", "numpy", "cpu", "cuda")  # where distances are computed
BLOCK_ELEMENTS = 1 << 22
"""Largest row-block x center-block product evaluated at once when seeding with many centers."""

CENTERING_RATIO = 4.0
"""Vectors are re-centred on their mean when |mean|^2 exceeds this multiple of their variance, which
keeps the |x|^2 + |c|^2 - 2 x.c expansion accurate for data far from the origin."""


_BLAS_CONTROLLER: list = []


def single_blas_thread() -> contextlib.AbstractContextManager:
    """Context limiting NumPy's BLAS to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def resolve_device(device: str) -> str:
    """'numpy', 'cpu' (torch on CPU) or 'cuda' for a requested device ('auto' picks cuda when present).

    On Linux, 'auto' skips importing torch when no NVIDIA driver device node exists.
    """
    if device not in DEVICES:
        raise SelectorError(f"device: expected {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available(skip_without_driver=True) else "numpy"
    if device == "cuda":
        try:
            resolve_torch_device(device)
        except DeviceError as exc:
            raise SelectorError(str(exc)) from None
    return device


class FarthestFirst:
    """Running minimum of squared distances from every row of a matrix to a growing set of centers.

    Rows can be blocked (never returned by `farthest`); blocked rows keep the value -inf.
    """

    def __init__(self, vectors: np.ndarray, device: str = "auto") -> None:
        """Prepare the matrix (float32, re-centred if far from the origin) on the chosen device."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size = int(matrix.shape[0])
        self.device = resolve_device(device)
        self.shift = self._centering_shift(matrix)
        if self.shift is not None:
            matrix = matrix - self.shift
        sq_norms = np.einsum("ij,ij->i", matrix, matrix)
        if self.device == "numpy":
            self.matrix, self.sq_norms = matrix, sq_norms
            self.min_d2 = np.full(self.size, np.inf, dtype=np.float32)
            self._dots = np.empty(self.size, dtype=np.float32)
        else:
            import torch

            self.matrix = torch.from_numpy(matrix).to(self.device)
            self.sq_norms = torch.from_numpy(sq_norms).to(self.device)
            self.min_d2 = torch.full((self.size,), math.inf, dtype=torch.float32, device=self.device)

    @staticmethod
    def _centering_shift(matrix: np.ndarray) -> np.ndarray | None:
        """The mean to subtract when the data sits far from the origin, else None."""
        if matrix.shape[0] == 0:
            return None
        mean = matrix.mean(axis=0, dtype=np.float64)
        mean_sq = float(np.einsum("ij,ij->", matrix, matrix, dtype=np.float64)) / matrix.shape[0]
        variance = max(mean_sq - float(mean @ mean), 0.0)
        if float(mean @ mean) > CENTERING_RATIO * variance:
            return mean.astype(np.float32)
        return None

    def _prepare(self, centers: np.ndarray) -> np.ndarray:
        """External center vectors in this engine's (possibly re-centred) coordinates."""
        centers = np.ascontiguousarray(np.atleast_2d(centers), dtype=np.float32)
        return centers - self.shift if self.shift is not None else centers

    def distances_to_mean(self) -> np.ndarray:
        """Squared distance of every row to the mean of all rows (float64, NumPy)."""
        if self.device == "numpy":
            mean = self.matrix.mean(axis=0, dtype=np.float64)
            return np.maximum(self.sq_norms - 2.0 * (self.matrix @ mean.astype(np.float32)) + mean @ mean, 0.0)
        import torch

        mean = self.matrix.sum(dim=0, dtype=torch.float64) / max(self.size, 1)
        dots = torch.mv(self.matrix, mean.float()).double()
        return (self.sq_norms.double() - 2.0 * dots + mean @ mean).clamp_min(0.0).cpu().numpy()

    def add_row(self, row: int) -> None:
        """Make row `row` a center: one matrix-vector product updates every running minimum."""
        if self.device == "numpy":
            dots = self._dots
            np.dot(self.matrix, self.matrix[row], out=dots)
            dots *= -2.0
            dots += self.sq_norms
            dots += self.sq_norms[row]
            np.maximum(dots, 0.0, out=dots)
            np.minimum(self.min_d2, dots, out=self.min_d2)
        else:
            import torch

            d2 = torch.mv(self.matrix, self.matrix[row]).mul_(-2.0).add_(self.sq_norms).add_(self.sq_norms[row])
            torch.minimum(self.min_d2, d2.clamp_min_(0.0), out=self.min_d2)

    def add_centers(self, centers: np.ndarray) -> None:
        """Make external vectors (k, D) centers, evaluated block by block (never N x k at once)."""
        centers = self._prepare(centers)
        if centers.shape[0] == 0:
            return
        center_block = max(1, min(centers.shape[0], BLOCK_ELEMENTS // 1024))
        row_block = max(1, BLOCK_ELEMENTS // center_block)
        for c_start in range(0, centers.shape[0], center_block):
            chunk = centers[c_start:c_start + center_block]
            self._add_center_block(chunk, row_block)

    def _add_center_block(self, centers: np.ndarray, row_block: int) -> None:
        """Running-min update against one block of centers, row block by row block."""
        center_sq = np.einsum("ij,ij->i", centers, centers)
        if self.device != "numpy":
            import torch

            centers_t = torch.from_numpy(centers).to(self.device)
            center_sq_t = torch.from_numpy(center_sq).to(self.device)
        for start in range(0, self.size, row_block):
            stop = min(start + row_block, self.size)
            if self.device == "numpy":
                d2 = self.matrix[start:stop] @ centers.T
                d2 *= -2.0
                d2 += self.sq_norms[start:stop, None]
                d2 += center_sq[None, :]
                nearest = np.maximum(d2.min(axis=1), 0.0)
                np.minimum(self.min_d2[start:stop], nearest, out=self.min_d2[start:stop])
            else:
                d2 = (self.matrix[start:stop] @ centers_t.T).mul_(-2.0)
                d2.add_(self.sq_norms[start:stop, None]).add_(center_sq_t[None, :])
                nearest = d2.min(dim=1).values.clamp_min_(0.0)
                torch.minimum(self.min_d2[start:stop], nearest, out=self.min_d2[start:stop])

    def block(self, rows: np.ndarray | Sequence[int]) -> None:
        """Never return these rows from `farthest` again."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        if self.device == "numpy":
            self.min_d2[rows] = -np.inf
        else:
            import torch

            self.min_d2[torch.from_numpy(rows).to(self.device)] = -math.inf

    def farthest(self) -> tuple[int, float]:
        """(row, squared distance) of the unblocked row farthest from all centers; row -1 if none.

        Ties go to the lowest row index.
        """
        if self.device == "numpy":
            row = int(np.argmax(self.min_d2)) if self.size else -1
            value = float(self.min_d2[row]) if self.size else -math.inf
        else:
            row = int(self.min_d2.argmax()) if self.size else -1
            value = float(self.min_d2[row]) if self.size else -math.inf
        if value == -math.inf:
            return -1, value
        return row, value

    def values(self) -> np.ndarray:
        """The running minimum squared distances as a NumPy array (-inf for blocked rows)."""
        return self.min_d2 if self.device == "numpy" else self.min_d2.cpu().numpy()


class LazyFarthestFirst(FarthestFirst):
    """Exact farthest-first on CPU that updates distances only where they can change the answer.

    A row's stored value is the minimum over the centers it has been compared with so far, hence an
    upper bound on its true value. `farthest` brings only the rows with the largest bounds up to
    date (a blocked matrix product against the centers they have not seen yet), widening the set
    until the best up-to-date value strictly beats every remaining bound. The answer, ties to the
    lowest row included, is the one a full update would give, at a fraction of the memory traffic.
    """

    FIRST_CANDIDATES = 32
    ROW_BLOCK = 4096
    SINGLE_THREAD_ROWS = 4096
    """Catch-ups of at most this many rows run with one BLAS thread: for such small products,
    thread start-up and waiting cost more than they save (much more on shared, busy cores)."""

    def __init__(self, vectors: np.ndarray) -> None:
        """Prepare the matrix in NumPy; no center yet."""
        super().__init__(vectors, device="numpy")
        self.seen = np.zeros(self.size, dtype=np.int64)
        self.centers = np.empty((16, self.matrix.shape[1]), dtype=np.float32)
        self.center_sq = np.empty(16, dtype=np.float32)
        self.count = 0

    def _append(self, centers: np.ndarray) -> None:
        """Append center vectors (already in engine coordinates), growing storage by doubling."""
        needed = self.count + centers.shape[0]
        if needed > self.centers.shape[0]:
            capacity = max(needed, 2 * self.centers.shape[0])
            grown = np.empty((capacity, self.centers.shape[1]), dtype=np.float32)
            grown[:self.count] = self.centers[:self.count]
            grown_sq = np.empty(capacity, dtype=np.float32)
            grown_sq[:self.count] = self.center_sq[:self.count]
            self.centers, self.center_sq = grown, grown_sq
        self.centers[self.count:needed] = centers
        self.center_sq[self.count:needed] = np.einsum("ij,ij->i", centers, centers)
        self.count = needed

    def add_row(self, row: int) -> None:
        """Make row `row` a center (distances are updated lazily)."""
        self._append(self.matrix[row:row + 1])

    def add_centers(self, centers: np.ndarray) -> None:
        """Make external vectors (k, D) centers (distances are updated lazily)."""
        centers = self._prepare(centers)
        if centers.shape[0]:
            self._append(centers)

    def _catch_up(self, rows: np.ndarray) -> None:
        """Compare the given rows with every center they have not seen, in bounded blocks."""
        stale = rows[(self.seen[rows] < self.count) & (self.min_d2[rows] != -np.inf)]
        if stale.size == 0:
            return
        stale = stale[np.argsort(self.seen[stale], kind="stable")]
        with single_blas_thread() if stale.size <= self.SINGLE_THREAD_ROWS else contextlib.nullcontext():
            self._catch_up_sorted(stale)

    def _catch_up_sorted(self, stale: np.ndarray) -> None:
        """Catch up rows sorted by how many centers they have seen (fewest first)."""
        for start in range(0, stale.size, self.ROW_BLOCK):
            part = stale[start:start + self.ROW_BLOCK]
            block = self.matrix[part]
            first = int(self.seen[part[0]])
            center_block = max(1, BLOCK_ELEMENTS // part.size)
            nearest = np.full(part.size, np.inf, dtype=np.float32)
            for c_start in range(first, self.count, center_block):
                c_stop = min(c_start + center_block, self.count)
                d2 = block @ self.centers[c_start:c_stop].T
                d2 *= -2.0
                d2 += self.sq_norms[part, None]
                d2 += self.center_sq[None, c_start:c_stop]
                np.minimum(nearest, d2.min(axis=1), out=nearest)
            np.maximum(nearest, 0.0, out=nearest)
            self.min_d2[part] = np.minimum(self.min_d2[part], nearest)
            self.seen[part] = self.count

    def farthest(self) -> tuple[int, float]:
        """(row, squared distance) of the unblocked row farthest from all centers; row -1 if none.

        Ties go to the lowest row index.
        """
        candidates = self.FIRST_CANDIDATES
        while True:
            if candidates >= self.size:
                top, bound = np.arange(self.size), -math.inf
            else:
                order = np.argpartition(-self.min_d2, candidates)
                top, bound = order[:candidates], float(self.min_d2[order[candidates]])
            self._catch_up(top)
            values = self.min_d2[top]
            best = float(values.max()) if top.size else -math.inf
            if best > bound or candidates >= self.size:
                if best == -math.inf:
                    return -1, best
                return int(top[values == best].min()), best
            candidates *= 4

    def values(self) -> np.ndarray:
        """The exact running minimum squared distances (-inf for blocked rows)."""
        self._catch_up(np.arange(self.size))
        return self.min_d2


def make_engine(vectors: np.ndarray, device: str, lazy: bool = True) -> FarthestFirst:
    """The farthest-first engine for a device: lazy updates in NumPy, full updates with torch."""
    resolved = resolve_device(device)
    if resolved == "numpy" and lazy:
        return LazyFarthestFirst(vectors)
    return FarthestFirst(vectors, resolved)


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings as a finite float32 (N, D) array, or a SelectorError."""
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise SelectorError(f"embeddings: expected a 2-D (N, D) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise SelectorError(f"embeddings: expected floats, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not all_finite(array):
        raise SelectorError("embeddings: contains NaN or infinite values")
    return array


def kcenter_greedy(
    embeddings: np.ndarray, budget: int, already_selected: Sequence[int] = ()
) -> np.ndarray:
    """Greedy k-center picks (row indices, in pick order) farthest from everything chosen so far.

    Distance is Euclidean on the vectors as given. Each pick is the point whose distance to its
    nearest already-selected or already-picked point is largest; ties go to the lowest index.
    With no `already_selected`, the first pick is the point farthest from the mean of all
    embeddings (ties: lowest index). Already-selected rows are never returned. Returns
    min(budget, N - len(set(already_selected))) indices as int64.
    """
    matrix = _check_embeddings(embeddings)
    if int(budget) != budget or budget < 0:
        raise SelectorError(f"budget: must be a non-negative integer, got {budget!r}")
    seeds = np.unique(np.asarray(list(already_selected), dtype=np.int64))
    if seeds.size and (seeds[0] < 0 or seeds[-1] >= matrix.shape[0]):
        raise SelectorError(f"already_selected: indices must lie in [0, {matrix.shape[0]}), got {seeds.tolist()[:10]}")
    count = min(int(budget), matrix.shape[0] - seeds.size)
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    engine = make_engine(matrix, "auto")
    picks = _farthest_first_rows(engine, seeds, count)
    return np.asarray(picks, dtype=np.int64)


def _farthest_first_rows(engine: FarthestFirst, seed_rows: np.ndarray, count: int) -> list[int]:
    """Up to `count` farthest-first picks on an engine seeded with rows of its own matrix."""
    for row in seed_rows:
        engine.add_row(int(row))
    engine.block(seed_rows)
    picks: list[int] = []
    if seed_rows.size == 0:
        first = int(np.argmax(engine.distances_to_mean()))
        picks.append(first)
        engine.add_row(first)
        engine.block([first])
    while len(picks) < count:
        row, _ = engine.farthest()
        if row < 0:
            break
        picks.append(row)
        engine.add_row(row)
        engine.block([row])
    return picks


def seed_rows(pool: CandidatePool, constraints: Constraints) -> np.ndarray:
    """Rows that count as already covered: labeled and/or selected frames, as the constraints exclude them."""
    mask = np.zeros(pool.size, dtype=bool)
    if constraints.exclude_labeled:
        mask |= pool.labeled
    if constraints.exclude_selected:
        mask |= pool.selected
    return np.flatnonzero(mask)


class ConstrainedFarthestFirst:
    """Farthest-first traversal over a pool's eligible frames, seeded with its covered frames."""

    def __init__(
        self, pool: CandidatePool, tracker: ConstraintTracker, candidates: np.ndarray, device: str,
        lazy: bool = True,
    ) -> None:
        """Build the engine over the candidate rows and add the seed frames as centers.

        `lazy` False keeps every distance up to date after each pick (for callers reading `values()`).
        """
        self.pool = pool
        self.tracker = tracker
        self.candidates = candidates
        self.local = np.full(pool.size, -1, dtype=np.int64)
        self.local[candidates] = np.arange(candidates.size)
        whole_pool = candidates.size == pool.size
        self.engine = make_engine(pool.embeddings if whole_pool else pool.embeddings[candidates], device, lazy)
        seeds = seed_rows(pool, tracker.constraints)
        self.seeded = seeds.size > 0
        if self.seeded:
            self.engine.add_centers(pool.embeddings[seeds])
        self.engine.block(np.flatnonzero(~tracker.eligible[candidates]))

    def add_pool_rows(self, rows: np.ndarray) -> None:
        """Make pool rows centers (e.g. picks made by another stage)."""
        if rows.size:
            self.engine.add_centers(self.pool.embeddings[rows])

    def take(self, pool_row: int, score: float, reason: str) -> None:
        """Record a pick: it becomes a center and the frames it blocks leave the candidates."""
        blocked = self.tracker.take(pool_row)
        self.tracker.reasons[int(pool_row)] = (float(score), reason)
        local = self.local[pool_row]
        if local >= 0:
            self.engine.add_row(int(local))
        else:
            self.engine.add_centers(self.pool.embeddings[[pool_row]])
        local_blocked = self.local[blocked]
        self.engine.block(local_blocked[local_blocked >= 0])

    def first_row(self) -> tuple[int, float]:
        """(pool row, distance) of the eligible candidate farthest from the candidates' mean."""
        d2 = self.engine.distances_to_mean()
        d2[~self.tracker.eligible[self.candidates]] = -np.inf
        local = int(np.argmax(d2))
        return int(self.candidates[local]), math.sqrt(float(d2[local]))

    def run(self, describe: Callable[[int, float], str]) -> None:
        """Pick farthest-first until the tracker is done; describe(row, distance) gives each reason."""
        if not self.seeded and not self.tracker.taken and not self.tracker.done:
            row, distance = self.first_row()
            self.take(row, distance, f"first pick: farthest from the candidates' mean: d={distance:.4g}")
        while not self.tracker.done:
            local, d2 = self.engine.farthest()
            if local < 0:
                break
            row, distance = int(self.candidates[local]), math.sqrt(max(d2, 0.0))
            self.take(row, distance, describe(row, distance))


@register("kcenter", device=Rule(choices=DEVICES))
def kcenter(pool: CandidatePool, constraints: Constraints, *, device: str = "auto") -> list[Pick]:
    """Diversity (coreset): greedy k-center seeded with the labeled frames, farthest frame first.

    Each pick is the eligible frame whose Euclidean distance to the nearest labeled, selected or
    already picked frame is largest; its score is that distance. `device`: auto, numpy, cpu, cuda.
    """
    tracker = ConstraintTracker(pool, constraints)
    if tracker.done:
        return []
    candidates = np.flatnonzero(tracker.eligible)
    traversal = ConstrainedFarthestFirst(pool, tracker, candidates, device)
    traversal.run(lambda row, d: f"farthest from the labeled set and earlier picks: d={d:.4g}")
    return tracker.picks()
