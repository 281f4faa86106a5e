"""A simulated annotator: labels picked frames from ground-truth masks (DAVIS Annotations layout).

Used by the round of the loop (`services.loop.run_round`: the demo, `segloop loop round --oracle`, the
loop_round job and the active-learning benchmark) to play the human; it only ever reads the masks of the
frames it is asked to label.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segloop.platform.core import davis
from segloop.platform.core.masks import VOID_LABEL, MaskError, read_mask
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, selections


class OracleError(ValueError):
    """Ground truth the oracle cannot provide; the message names the file."""


@dataclass(frozen=True)
class DavisOracle:
    """Ground truth at `root/<video name>/<source index:05d>.png`."""

    root: Path

    def label_map(self, video_name: str, source_index: int, size: tuple[int, int]) -> np.ndarray:
        """The ground-truth label map of one source frame, resized (nearest) to (width, height) as ingest resized the
        frames; void pixels (255, not labelled in DAVIS) are left unlabelled, not saved as an object."""
        path = self.root / video_name / davis.mask_name(source_index)
        if not path.is_file():
            raise OracleError(f"{path}: no ground-truth mask for {video_name} frame {source_index}")
        labels = read_mask(path)
        height, width = labels.shape
        if abs(width * size[1] / height - size[0]) > 1:  # more than rounding: not a resized copy of the frame
            raise OracleError(f"{path}: the mask is {width}x{height}, the stored frames are {size[0]}x{size[1]}: "
                              "not the same picture shape, so it cannot be the ground truth of these frames")
        if (width, height) != size:
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        return np.where(labels == VOID_LABEL, 0, labels).astype(np.uint8)

    def covers(self, video_name: str) -> bool:
        """Whether ground truth exists for this video."""
        return (self.root / video_name).is_dir()

    def require(self, video_names: list[str]) -> None:
        """OracleError naming the videos for which the oracle holds no mask at all (it could label none of their
        frames), so that a round is refused before it selects anything."""
        missing = [name for name in video_names if not any((self.root / name).glob("*.png"))]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise OracleError(f"oracle: {self.root} holds no ground-truth masks (<video>/00000.png, ...) for "
                              f"{len(missing)} of the project's {len(video_names)} videos ({shown}): the simulated "
                              "annotator must be able to label any frame the round picks")


def label_selection(selection_id: int, oracle: DavisOracle, settings: Settings | None = None,
                    author: str = "oracle", only: list[int] | None = None) -> int:
    """Save the oracle's masks for every pick of a run (or those of them in `only`) as submitted manual annotations;
    returns frames labelled."""
    settings = settings or load_settings()
    engine = get_engine(settings)
    try:
        with session_scope(engine) as session:
            picked = [item.frame_id for item in selections.selection_items(session, selection_id)
                      if only is None or item.frame_id in only]
            _save_masks(session, picked, oracle, author)
            selections.set_item_status(session, selection_id, picked, "accepted")
    except (OracleError, MaskError):  # nothing was saved; the picks it could not label are freed for later runs
        with session_scope(engine) as session:
            selections.set_item_status(session, selection_id, picked, "rejected")
        raise
    return len(picked)


def label_frames(frame_ids: list[int], oracle: DavisOracle, settings: Settings | None = None,
                 author: str = "oracle") -> int:
    """Save the oracle's masks of these frames (no selection run) as submitted manual annotations."""
    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        _save_masks(session, frame_ids, oracle, author)
    return len(frame_ids)


def _save_masks(session, frame_ids: list[int], oracle: DavisOracle, author: str) -> None:
    """One submitted manual annotation per object of each frame's ground truth (in the caller's transaction)."""
    for frame_id in frame_ids:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        labels = oracle.label_map(video.name, frame.source_index, (video.stored_width, video.stored_height))
        for object_id in np.unique(labels):
            if object_id == 0:
                continue
            annotation_store.save_annotation(
                session, frame.id, int(object_id), labels == object_id, "manual", status="submitted",
                author=author, expected_version=annotation_store.latest_version(session, frame.id, int(object_id)),
            )
