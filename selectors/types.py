"""Plain data passed in and out of the selectors: the candidate pool and the ranked picks."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

NO_GROUP = -1
"""Near-duplicate group id of a frame that has no near-duplicate."""


class SelectorError(ValueError):
    """Bad input to a selector or an index; the message names the field and the reason."""


def all_finite(array: np.ndarray, block_rows: int = 8192) -> bool:
    """True when no value is NaN or infinite, checked in row blocks (no full-size boolean temporary)."""
    array = np.asarray(array)
    if array.ndim < 2:
        return bool(np.all(np.isfinite(array)))
    return all(bool(np.all(np.isfinite(array[start:start + block_rows])))
               for start in range(0, array.shape[0], block_rows))


def _int_array(name: str, values: object, n: int) -> np.ndarray:
    """`values` as a 1-D int64 array of length n, or a SelectorError naming `name`."""
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != n:
        raise SelectorError(f"CandidatePool.{name}: expected shape ({n},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise SelectorError(f"CandidatePool.{name}: expected integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _bool_array(name: str, values: object | None, n: int) -> np.ndarray:
    """`values` as a 1-D bool array of length n (all False when None)."""
    if values is None:
        return np.zeros(n, dtype=bool)
    array = np.asarray(values)
    if array.shape != (n,):
        raise SelectorError(f"CandidatePool.{name}: expected shape ({n},), got {array.shape}")
    if array.dtype != bool:
        raise SelectorError(f"CandidatePool.{name}: expected a boolean mask, got dtype {array.dtype}")
    return array


def _float_array(name: str, values: object, n: int) -> np.ndarray:
    """`values` as a finite 1-D float64 array of length n."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise SelectorError(f"CandidatePool.{name}: expected shape ({n},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SelectorError(f"CandidatePool.{name}: contains NaN or infinite values")
    return array


@dataclass
class CandidatePool:
    """Every frame a selector may look at: embeddings plus the per-frame facts constraints need.

    Row i of every array describes the same frame. `labeled` marks frames that already have masks,
    `selected` frames already queued for annotation by an earlier selection run; both act as seeds
    for the diversity strategies and are never picked again (unless the constraints say otherwise).
    `duplicate_groups` holds a near-duplicate group id per frame (NO_GROUP = -1 for none).
    `uncertainty` maps a signal name (e.g. "entropy_mean", "vos_fb_disagreement") to a per-frame
    float array where higher means less certain.
    """

    embeddings: np.ndarray
    frame_ids: np.ndarray
    video_ids: np.ndarray
    frame_indices: np.ndarray
    timestamps: np.ndarray | None = None
    duplicate_groups: np.ndarray | None = None
    labeled: np.ndarray | None = None
    selected: np.ndarray | None = None
    uncertainty: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate shapes and dtypes, normalising every array to its canonical dtype."""
        embeddings = np.asarray(self.embeddings)
        if embeddings.ndim != 2:
            raise SelectorError(f"CandidatePool.embeddings: expected (N, D), got shape {embeddings.shape}")
        if embeddings.shape[1] == 0:
            raise SelectorError("CandidatePool.embeddings: dimension D must be at least 1")
        if not np.issubdtype(embeddings.dtype, np.floating):
            raise SelectorError(f"CandidatePool.embeddings: expected floats, got dtype {embeddings.dtype}")
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if not all_finite(self.embeddings):
            raise SelectorError("CandidatePool.embeddings: contains NaN or infinite values")
        n = self.embeddings.shape[0]
        self.frame_ids = _int_array("frame_ids", self.frame_ids, n)
        if np.unique(self.frame_ids).size != n:
            raise SelectorError("CandidatePool.frame_ids: frame ids must be unique")
        self.video_ids = _int_array("video_ids", self.video_ids, n)
        self.frame_indices = _int_array("frame_indices", self.frame_indices, n)
        if self.timestamps is not None:
            self.timestamps = _float_array("timestamps", self.timestamps, n)
        groups = np.full(n, NO_GROUP) if self.duplicate_groups is None else self.duplicate_groups
        self.duplicate_groups = _int_array("duplicate_groups", groups, n)
        self.labeled = _bool_array("labeled", self.labeled, n)
        self.selected = _bool_array("selected", self.selected, n)
        self.uncertainty = {
            str(name): _float_array(f"uncertainty[{name!r}]", values, n)
            for name, values in dict(self.uncertainty).items()
        }

    @property
    def size(self) -> int:
        """Number of frames in the pool."""
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.embeddings.shape[1])

    def rows_of(self, frame_ids: object) -> np.ndarray:
        """Row positions of the given frame ids (SelectorError naming any id not in the pool)."""
        wanted = np.atleast_1d(np.asarray(frame_ids, dtype=np.int64))
        order = np.argsort(self.frame_ids, kind="stable")
        sorted_ids = self.frame_ids[order]
        positions = np.minimum(np.searchsorted(sorted_ids, wanted), max(self.size - 1, 0))
        found = np.zeros(wanted.shape, dtype=bool) if self.size == 0 else sorted_ids[positions] == wanted
        if not np.all(found):
            raise SelectorError(f"frame ids not in the candidate pool: {wanted[~found][:10].tolist()}")
        return order[positions]

    def time_key(self) -> np.ndarray:
        """Per-frame position in time: timestamps in seconds when known, else frame indices."""
        if self.timestamps is not None:
            return self.timestamps
        return self.frame_indices.astype(np.float64)

    def signal(self, name: str | None) -> np.ndarray:
        """The named uncertainty signal; with name None the pool's only signal."""
        if not self.uncertainty:
            raise SelectorError(f"signal{'' if name is None else f' {name!r}'}: no frame has uncertainty scores yet "
                                "(predictions and propagation store them)")
        if name is None:
            if len(self.uncertainty) != 1:
                raise SelectorError(f"signal: the frames have several uncertainty scores, name one of "
                                    f"{sorted(self.uncertainty)}")
            return next(iter(self.uncertainty.values()))
        if name not in self.uncertainty:
            raise SelectorError(f"signal {name!r}: no such uncertainty scores; available: {sorted(self.uncertainty)}")
        return self.uncertainty[name]


@dataclass(frozen=True)
class Pick:
    """One chosen frame: its id, 1-based rank in pick order, the strategy's score and why."""

    frame_id: int
    rank: int
    score: float
    reason: str
    row: int

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, as persisted with a selection run."""
        return {
            "frame_id": self.frame_id,
            "rank": self.rank,
            "score": self.score,
            "reason": self.reason,
        }
