"""One round of the loop on SQLite: select → simulated labels → fine-tune → predict → evaluate, all recorded."""
from __future__ import annotations

from pathlib import Path

import pytest

from segloop.platform.db.engine import session_scope
from segloop.platform.services.loop import RoundConfig, oracle_from, run_round
from segloop.platform.vss.head import VSSConfig


@pytest.fixture
def footage_project(synth_root: Path, sqlite) -> str:
    """The synthetic mp4s ingested without masks."""
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="loop"), sqlite[0]).failed
    return "loop"


def _config(strategy: str = "kcenter", **params) -> RoundConfig:
    """A tiny round: 4 frames, small images, few steps."""
    return RoundConfig(strategy=strategy, budget=4, strategy_params=params, short_side=64, embed_img_size=32,
                       vss=VSSConfig(min_steps=30, epochs=1, device="cpu"))


def test_one_round_records_labels_checkpoint_and_metrics(footage_project: str, synth_root: Path, sqlite) -> None:
    """The round labels its 4 picks from ground truth, registers a vss checkpoint and round metrics;
    a second round can then select by the stored uncertainty."""
    from segloop.platform.db.stores import artifacts, metrics, projects, scores, selections
    from segloop.platform.services.selection import labeled_frame_ids

    settings, engine = sqlite
    oracle = oracle_from(synth_root)
    first = run_round(footage_project, _config(), oracle, settings=settings)
    assert first.round == 1 and first.status == "done" and len(first.picked) == 4 and first.labeled_frames == 4
    assert 0.0 <= first.metrics["mIoU"] <= 1.0
    with session_scope(engine) as session:
        project = projects.get_project(session, footage_project)
        assert labeled_frame_ids(session, project.id) == set(first.picked)
        checkpoint = artifacts.get_checkpoint(session, first.checkpoint_id)
        assert checkpoint.kind == "vss" and checkpoint.params["round"] == 1
        assert sorted(checkpoint.params["labeled_frame_ids"]) == sorted(first.picked)
        assert checkpoint.params["selection_id"] == first.selection_id
        assert selections.get_selection(session, first.selection_id).strategy == "kcenter"
        rows = [m for m in metrics.list_metrics(session, project_id=project.id) if m.scope == "round"]
        assert {m.name for m in rows} >= {"mIoU", "labeled_frames"}
        assert all(m.scope_key == "round-1" and m.checkpoint_id == first.checkpoint_id for m in rows)
        assert len(scores.latest_frame_scores(session, project.id, "vss_entropy_mean")) == 24
    second = run_round(footage_project, _config("uncertainty", signal="vss_entropy_mean"), oracle, settings=settings)
    assert second.round == 2 and second.labeled_frames == 8 and not set(second.picked) & set(first.picked)


def test_round_without_oracle_stops_after_selecting(footage_project: str, sqlite) -> None:
    """Without ground truth the round selects and waits for the annotators: no checkpoint."""
    settings, _ = sqlite
    result = run_round(footage_project, _config(), None, settings=settings)
    assert result.status == "awaiting labels" and result.checkpoint_id is None and len(result.picked) == 4


def test_a_round_with_nothing_left_to_pick_says_why_and_stores_no_run(footage_project: str, synth_root: Path,
                                                                     sqlite) -> None:
    """A round rerun while its picks await labels picked (and queued) another batch each time; it continues the round
    (same picks), and once they are labelled it trains and ends the round. Every frame already picked: the round
    stored an empty selection run and said to label 'the picked frames'; it stores nothing and says why."""
    from segloop.platform.db.stores import footage, projects, selections
    from segloop.platform.services.oracle import label_frames
    from segloop.platform.services.selection import run_selection
    from segloop.selectors.constraints import Constraints

    settings, engine = sqlite
    everything = RoundConfig(strategy="uniform", budget=24, short_side=64, embed_img_size=32)
    run_round(footage_project, RoundConfig(strategy="uniform", budget=1, short_side=64, embed_img_size=32,
                                           train=False), None, settings=settings)  # embeds; round 1 picks 1 frame
    first = run_selection(footage_project, "uniform", Constraints(budget=24), settings=settings)  # the rest
    again = run_round(footage_project, everything, None, settings=settings)
    assert again.status == "awaiting labels" and len(again.picked) == 1, "round 1 is continued, not picked again"
    with session_scope(engine) as session:
        frame_ids = [f.id for f in footage.project_frames(session, projects.get_project(session, footage_project).id)]
    label_frames(again.picked, oracle_from(synth_root), settings)
    done = run_round(footage_project, RoundConfig(strategy="uniform", budget=1, short_side=64, embed_img_size=32,
                                                  train=False), None, settings=settings)
    assert done.round == 1 and done.status == "done"
    again = run_round(footage_project, everything, None, settings=settings)
    assert (again.round, again.status, again.selection_id, again.picked) == (2, "nothing to label", None, [])
    assert f"{len(first.items)} selected by earlier runs" in again.note and len(frame_ids) == 24
    with session_scope(engine) as session:
        assert len(selections.list_selections(session, projects.get_project(session, footage_project).id)) == 2


def test_an_oracle_without_masks_for_the_projects_videos_is_refused_before_selecting(footage_project: str,
                                                                                     synth_root: Path, sqlite,
                                                                                     tmp_path: Path) -> None:
    """`loop round --oracle` on a folder without the project's masks (the frames' folder, another data set, one
    video's masks missing) selected frames, failed labelling them, and left that selection behind: its picks were
    then skipped by every later round. Now refused naming the videos, and nothing is selected."""
    import shutil

    from segloop.platform.db.stores import projects, selections
    from segloop.platform.services.oracle import OracleError

    settings, engine = sqlite
    partial = tmp_path / "partial"
    shutil.copytree(synth_root / "Annotations" / "480p", partial)
    first_video = sorted(p.name for p in partial.iterdir())[0]
    shutil.rmtree(partial / first_video)
    (partial / first_video).mkdir()  # the folder is there, its masks are not
    for folder, missing in ((synth_root / "JPEGImages" / "480p", "2 of the project's 2 videos"),
                            (partial, f"1 of the project's 2 videos ({first_video})")):
        with pytest.raises(OracleError) as refused:
            run_round(footage_project, _config(), oracle_from(folder), settings=settings)
        assert "holds no ground-truth masks" in str(refused.value) and f"for {missing}" in str(refused.value)
    with session_scope(engine) as session:
        assert selections.list_selections(session, projects.get_project(session, footage_project).id) == []


def test_picks_the_oracle_cannot_label_are_freed_for_later_rounds(footage_project: str, synth_root: Path, sqlite,
                                                                   tmp_path: Path) -> None:
    """Ground truth for the first frame only (as in DAVIS test sets): the round's labelling fails naming the frame,
    saves nothing, and its picks are rejected, so that a later round may pick them again."""
    import shutil

    from segloop.platform.db.stores import annotations, projects, selections
    from segloop.platform.services.oracle import OracleError

    settings, engine = sqlite
    first_only = tmp_path / "first-only"
    shutil.copytree(synth_root / "Annotations" / "480p", first_only)
    for mask in first_only.glob("*/*.png"):
        if mask.name != "00000.png":
            mask.unlink()
    with pytest.raises(OracleError, match="no ground-truth mask for synth-"):
        run_round(footage_project, _config(), oracle_from(first_only), settings=settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, footage_project).id
        [failed] = selections.list_selections(session, project)
        assert {item.status for item in selections.selection_items(session, failed.id)} == {"rejected"}
        assert selections.selected_frame_ids(session, project) == set()
        assert not annotations.human_labeled_frame_ids(session, project)
    again = run_round(footage_project, _config(), oracle_from(synth_root), settings=settings)
    assert again.status == "done" and len(again.picked) == 4


def test_a_round_stopped_while_predicting_can_be_run_again(footage_project: str, synth_root: Path, sqlite,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after a round's fine-tune was registered (while predicting) jammed the loop: every rerun picked and
    labelled another batch, then was refused because round-N held a registered model. The rerun continues the round
    with its picks, trains in a new folder and finishes it."""
    from segloop.platform.services import finetuning

    settings, _ = sqlite
    oracle = oracle_from(synth_root)
    real = finetuning.predict_project

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetuning, "predict_project", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_round(footage_project, _config(), oracle, settings=settings)
    monkeypatch.setattr(finetuning, "predict_project", real)
    again = run_round(footage_project, _config(), oracle, settings=settings)
    assert again.round == 1 and again.status == "done" and 0.0 <= again.metrics["mIoU"] <= 1.0
    assert again.newly_labeled == 0 and again.labeled_frames == 4, "the round's picks are kept, not picked again"
    assert (settings.runs_dir / "finetune" / footage_project / "round-1-2").is_dir()
