"""Embedding sets and selection runs on a real DB: embed a project, run every strategy, persist, show."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segloop.platform.core.davis import DavisLayout
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import footage, projects, scores
from segloop.platform.media.ingest import IngestOptions, ingest_paths
from segloop.platform.services.embedding import EmbeddingSetError, embed_project, load_embedding_set
from segloop.platform.services.selection import build_pool, run_selection, show_selection
from segloop.selectors.constraints import Constraints
from segloop.selectors.types import SelectorError


@pytest.fixture
def embedded(synth_root: Path, settings, engine):
    """Project 'sel': two synthetic videos (masks on video 000 only) embedded with a tiny random ViT."""
    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="sel"), settings).failed
    embedding_set = embed_project("sel", backbone="vit_tiny_patch16_224", img_size=32, batch_size=8, settings=settings)
    return embedding_set


def test_embed_project_registers_float16_vectors(embedded, settings) -> None:
    """One vector per frame, float16 on disk, frame ids aligned with the DB."""
    vectors, frame_ids = load_embedding_set(embedded, settings)
    assert vectors.shape == (24, 192) and embedded.count == 24 and embedded.dim == 192
    assert np.load(settings.data_dir / embedded.vectors_path).dtype == np.float16
    assert len(set(frame_ids.tolist())) == 24
    import torch

    torch.manual_seed(12345)  # the global random state does not choose a random-init encoder's weights
    again = embed_project("sel", backbone="vit_tiny_patch16_224", img_size=32, batch_size=8, settings=settings)
    assert again.id != embedded.id and np.array_equal(load_embedding_set(again, settings)[0], vectors)


def test_corrupt_embedding_file_is_named(embedded, settings) -> None:
    """A truncated or missing vectors file gives an error naming the set and the file (not the server's path, with
    numpy's advice about allow_pickle), and what to do; the map's reader says the same."""
    from segloop.platform.services.explore import sample_vectors

    path = settings.data_dir / embedded.vectors_path
    path.write_bytes(path.read_bytes()[:100])
    expected = (rf"^embedding set {embedded.id}: its file {path.name} is corrupt or truncated \(not a NumPy array "
                r"file\); embed the project again")
    for read in (load_embedding_set, sample_vectors):
        with pytest.raises(EmbeddingSetError, match=expected):
            read(embedded, settings)
    path.unlink()
    with pytest.raises(EmbeddingSetError, match=rf"^embedding set {embedded.id}: its file {path.name} is missing"):
        load_embedding_set(embedded, settings)


@pytest.mark.parametrize("strategy,params", [
    ("random", {"seed": 3}), ("uniform", {}), ("kcenter", {}), ("typicality", {"k": 3}), ("cluster", {"seed": 0}),
    ("uncertainty", {"signal": "vos_uncertainty"}), ("hybrid", {"signal": "vos_uncertainty"}),
])
def test_every_strategy_persists_a_run(strategy: str, params: dict, embedded, settings, engine) -> None:
    """Each strategy's picks are stored with rank, score and reason and respect the constraints."""
    with session_scope(engine) as session:
        project_id = projects.get_project(session, "sel").id
        frame_ids = [f.id for f in footage.project_frames(session, project_id)]
        scores.add_frame_scores(session, "vos_uncertainty", {f: (f % 7) / 7 for f in frame_ids})
    run = run_selection("sel", strategy, Constraints(budget=4, max_per_video=2), params, settings=settings)
    assert len(run.items) == 4 and [i.rank for i in run.items] == [1, 2, 3, 4]
    assert all(i.reason for i in run.items)
    shown, where = show_selection(run.selection.id, settings)
    assert [i.frame_id for i in shown.items] == [i.frame_id for i in run.items]
    videos = [where[i.frame_id][0] for i in run.items]
    assert max(videos.count(v) for v in set(videos)) <= 2
    again = run_selection("sel", strategy, Constraints(budget=4), params, settings=settings)
    assert not {i.frame_id for i in again.items} & {i.frame_id for i in run.items}


def test_runs_started_at_the_same_moment_never_queue_one_frame_twice(embedded, settings, engine,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose picks another run stored while it computed is redone on the new pool: the two queues share no
    frame and each holds its budget."""
    import segloop.platform.services.selection as service

    real_build_pool, pools = service.build_pool, []

    def pool_then_a_rival_run(*args, **kwargs):
        pool = real_build_pool(*args, **kwargs)
        pools.append(pool)
        if len(pools) == 1:  # another process stores the same picks between this run's read and its write
            rivals.append(run_selection("sel", "kcenter", Constraints(budget=4), settings=settings))
        return pool

    rivals: list = []
    monkeypatch.setattr(service, "build_pool", pool_then_a_rival_run)
    run = run_selection("sel", "kcenter", Constraints(budget=4), settings=settings)
    first, second = {i.frame_id for i in rivals[0].items}, {i.frame_id for i in run.items}
    assert len(first) == len(second) == 4 and not first & second and len(pools) == 3


def test_locking_a_project_waits_for_the_transaction_holding_it(embedded, settings, engine) -> None:
    """The project lock a run stores its picks under is held until its transaction ends, on either database."""
    import threading
    import time

    locked, times = threading.Event(), {}

    def hold() -> None:
        with session_scope(engine) as session:
            projects.lock_project(session, "sel")
            locked.set()
            time.sleep(0.4)
            times["released"] = time.monotonic()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(30)
    with session_scope(engine) as session:
        projects.lock_project(session, "sel")
        times["acquired"] = time.monotonic()
    holder.join()
    assert times["acquired"] >= times["released"]


def test_labeled_frames_are_never_picked(embedded, settings, engine) -> None:
    """Frames with human masks are marked labeled in the pool and never picked again."""
    from segloop.platform.db.stores import annotations as annotation_store

    with session_scope(engine) as session:
        frames = footage.project_frames(session, projects.get_project(session, "sel").id)
        labeled = [f.id for f in frames[::3]]
        for frame_id in labeled:
            annotation_store.save_annotation(session, frame_id, 1, np.ones((64, 96), bool), "manual",
                                             expected_version=0)
    pool, _ = build_pool("sel", settings=settings)
    assert set(pool.frame_ids[pool.labeled].tolist()) == set(labeled)
    run = run_selection("sel", "kcenter", Constraints(budget=10, one_per_duplicate_group=False), settings=settings)
    assert len(run.items) == 10 and not {i.frame_id for i in run.items} & set(labeled)


def test_keyframes_strategy_for_one_video(embedded, settings, engine) -> None:
    """`keyframes` picks K frames of the chosen video."""
    with session_scope(engine) as session:
        video = footage.list_videos(session, projects.get_project(session, "sel").id)[0]
    run = run_selection("sel", "keyframes", Constraints(budget=3), {"video_id": video.id}, settings=settings)
    _, where = show_selection(run.selection.id, settings)
    assert len(run.items) == 3 and {where[i.frame_id][0] for i in run.items} == {video.name}
    with pytest.raises(SelectorError) as refused:  # was "...; pass video_id or constraints.videos"
        run_selection("sel", "keyframes", Constraints(budget=3), settings=settings)
    with session_scope(engine) as session:
        ids = ", ".join(str(v.id) for v in footage.list_videos(session, projects.get_project(session, "sel").id))
    assert str(refused.value).endswith(f"covers 2 videos (ids {ids}): give the strategy a video_id parameter, or "
                                       "limit the selection to one video")


def test_select_cli(embedded, cli, tmp_path: Path) -> None:
    """`segloop select` runs, stores and prints; `select show` prints it again; JSON written."""
    out = tmp_path / "run.json"
    result = cli("select", "--project", "sel", "--strategy", "kcenter", "--budget", "3", "--json", str(out))
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(out.read_text())
    assert len(data["picks"]) == 3 and data["strategy"] == "kcenter"
    shown = cli("select", "show", str(data["id"]))
    assert shown.exit_code == 0 and "kcenter" in shown.output
    bad = cli("select", "--project", "sel", "--strategy", "nope")
    assert bad.exit_code == 1 and "strategy 'nope' is unknown" in bad.output


@pytest.mark.parametrize(("options", "message"), [
    (["--video", "999"], "select params: videos: video 999 does not exist"),
    (["--param", "seed=x"], "random: seed must be an integer, got 'x'"),
    (["--param", "seed=NaN"], "random: seed must be an integer, got nan"),
    (["--time-range", "5", "1"], "time_range: start must be <= end, got 5.0 and 1.0"),
    (["--time-range", "nan", "4"], "select: time_range[0]: expected a finite number, got nan"),
])
def test_select_cli_refuses_what_cannot_be_picked_by_name(options: list[str], message: str, embedded, cli,
                                                          engine) -> None:
    """A video outside the project, a strategy parameter of the wrong type, a reversed or NaN time range is
    refused naming it, exit 1, no run stored (before: an empty run stored with exit 0, or a TypeError traceback)."""
    from segloop.platform.db.stores import selections

    result = cli("select", "--project", "sel", "--strategy", "random", "--budget", "2", *options)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    with session_scope(engine) as session:
        assert selections.list_selections(session, projects.get_project(session, "sel").id) == []


def test_oracle_labels_exactly_the_picks(embedded, synth_root: Path, settings, engine) -> None:
    """The simulated annotator saves ground-truth masks for the picked frames only, as submitted manual masks."""
    from segloop.platform.core.masks import read_mask
    from segloop.platform.db.stores import annotations as annotation_store
    from segloop.platform.services.oracle import DavisOracle, OracleError, label_selection
    from segloop.platform.services.selection import labeled_frame_ids

    run = run_selection("sel", "uniform", Constraints(budget=3), settings=settings)
    assert label_selection(run.selection.id, DavisOracle(DavisLayout(synth_root).masks_dir), settings) == 3
    _, where = show_selection(run.selection.id, settings)
    with session_scope(engine) as session:
        assert labeled_frame_ids(session, projects.get_project(session, "sel").id) == {i.frame_id for i in run.items}
        item = run.items[0]
        saved = annotation_store.latest_annotations(session, item.frame_id)
    video, index = where[item.frame_id]
    expected = read_mask(DavisLayout(synth_root).mask_path(video, index))
    np.testing.assert_array_equal(annotation_store.label_map(saved, 64, 96), expected)
    assert {(a.source, a.status, a.author) for a in saved} == {("manual", "submitted", "oracle")}
    with pytest.raises(OracleError, match="no ground-truth mask"):
        DavisOracle(synth_root / "nowhere").label_map(video, 0, (96, 64))


def test_oracle_masks_of_another_picture_shape_are_refused_and_void_is_no_object(synth_root: Path,
                                                                                 tmp_path: Path) -> None:
    """A ground-truth mask whose shape is not the frames' (200x48 for 96x64 frames) was stretched onto them and
    saved as human labels; a downscaled copy (48x32) is resized as before; void (255) was saved as object 255."""
    from segloop.platform.core.masks import write_mask
    from segloop.platform.services.oracle import DavisOracle, OracleError

    labels = np.zeros((64, 96), np.uint8)
    labels[10:30, 20:50], labels[40:50, 60:70] = 1, 255
    for name, size in (("wide", (200, 48)), ("half", (48, 32))):
        write_mask(tmp_path / name / "00000.png", cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST))
    with pytest.raises(OracleError, match="the mask is 200x48, the stored frames are 96x64: not the same picture"):
        DavisOracle(tmp_path).label_map("wide", 0, (96, 64))
    resized = DavisOracle(tmp_path).label_map("half", 0, (96, 64))
    assert resized.shape == (64, 96) and set(np.unique(resized)) == {0, 1}


def test_embed_project_under_torchrun_matches_one_process(embedded, settings, engine, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 ... embed --project`: frames sharded over 2 gloo processes, one set, same
    vectors."""
    import os
    import subprocess
    import sys

    import torch

    from segloop.platform.db.stores import artifacts
    from segloop.pretrain.backbones import create_backbone

    if settings.database_url is not None:
        pytest.skip("the launcher path is database-independent; SQLite is enough")
    weights = tmp_path / "weights.pth"
    torch.save(create_backbone("vit_tiny_patch16_224").state_dict(), weights)
    embed_project("sel", backbone="vit_tiny_patch16_224", checkpoint=weights, img_size=32, batch_size=8,
                  settings=settings)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "segloop.platform.cli", "embed", "--project", "sel", "--backbone", "vit_tiny_patch16_224",
         "--checkpoint", str(weights), "--img-size", "32", "--batch-size", "8"],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with session_scope(engine) as session:
        sets = artifacts.list_embedding_sets(session, projects.get_project(session, "sel").id)
    assert len(sets) == 3
    single, single_ids = load_embedding_set(sets[1], settings)
    sharded, sharded_ids = load_embedding_set(sets[0], settings)
    assert np.array_equal(single_ids, sharded_ids)
    np.testing.assert_allclose(sharded, single, atol=2e-2)


def test_select_job_form_and_cli_take_the_same_constraints(embedded, settings, engine, cli) -> None:
    """The select operation has one spec: a job, the Select page's form values and the CLI accept the time range,
    the minimum gap in seconds and the labeled / selected inclusions (a job had none of them), refused alike at
    submission when they cannot describe a selection, and the same params pick the same frames everywhere."""
    from segloop.platform.core.errors import ValidationError
    from segloop.platform.db.stores import selections
    from segloop.platform.services.jobs import submit_job
    from segloop.platform.services.selection import select_values

    base = {"project": "sel", "strategy": "random", "budget": 3, "params": {"seed": 4}}
    for bad, message in (({"time_range": [5.0, 1.0]}, "select params: time_range: start must be <= end"),
                         ({"time_range": [1.0]}, "select params: time_range: give START and END in seconds"),
                         ({"min_gap_seconds": -1}, "select params: min_gap_seconds: must be >= 0")):
        with pytest.raises(ValidationError, match=message):
            submit_job(engine, "select", {**base, **bad})
        with pytest.raises(ValidationError, match=message):
            select_values({**base, **bad}, settings=settings)
    wanted = {**base, "time_range": [0.0, 0.5], "min_gap_seconds": 0.1, "include_labeled": True}
    job = submit_job(engine, "select", wanted)
    assert job.params["time_range"] == [0.0, 0.5] and job.params["include_labeled"] is True
    from_form = select_values(wanted, settings=settings)
    with session_scope(engine) as session:
        stamps = {f.id: f.timestamp for v in footage.list_videos(session, embedded.project_id)
                  for f in footage.list_frames(session, v.id)}
    picked = [item.frame_id for item in from_form.items]
    assert picked and all(0.0 <= stamps[f] <= 0.5 for f in picked)
    result = cli("select", "--project", "sel", "--strategy", "random", "--budget", "3", "--param", "seed=4",
                 "--time-range", "0", "0.5", "--min-gap-seconds", "0.1", "--include-labeled", "--include-selected")
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        newest = selections.list_selections(session, projects.get_project(session, "sel").id)[0]
        assert [i.frame_id for i in selections.selection_items(session, newest.id)] == picked


def test_select_cli_refuses_a_run_that_picks_nothing_and_says_why(embedded, cli, engine) -> None:
    """Once every frame is picked, another `segloop select` is refused naming what excluded the frames and stores
    nothing (before: an empty table, an empty run stored, exit 0); `--budget 0` is refused like the job's budget."""
    from segloop.platform.db.stores import selections

    first = cli("select", "--project", "sel", "--strategy", "random", "--budget", "1000", "--include-labeled")
    assert first.exit_code == 0, first.output
    second = cli("select", "--project", "sel", "--strategy", "kcenter", "--budget", "3")
    assert second.exit_code == 1 and "kcenter picked no frame" in second.output, second.output
    assert "selected by earlier runs" in second.output and "nothing was stored" in second.output
    assert cli("select", "--project", "sel", "--strategy", "kcenter", "--budget", "0").exit_code == 2
    with session_scope(engine) as session:
        assert len(selections.list_selections(session, projects.get_project(session, "sel").id)) == 1


def test_embedding_uses_the_projects_pretrained_encoder_by_default(embedded, settings, engine, cli,
                                                                   tmp_path: Path) -> None:
    """No checkpoint given (the embed job's default, `embed --project` without --checkpoint): the project's newest
    pretrained encoder, built as the backbone it was trained as, and the set links to it; before one exists the
    set says it is random-init."""
    import torch

    from segloop.platform.db.stores import artifacts
    from segloop.pretrain.backbones import create_backbone

    assert embedded.checkpoint_id is None and "no pretrained encoder" in embedded.params["encoder"]
    run = tmp_path / "run"
    run.mkdir()
    torch.save(create_backbone("vit_small_patch16_224").state_dict(), run / "teacher_backbone.pth")
    with session_scope(engine) as session:
        checkpoint = artifacts.add_checkpoint(session, "pretrain", "vit_small_patch16_224",
                                              str(run / "teacher_backbone.pth"),
                                              project_id=projects.get_project(session, "sel").id)
    by_default = embed_project("sel", img_size=32, batch_size=8, settings=settings)
    assert (by_default.checkpoint_id, by_default.backbone, by_default.dim) == (checkpoint.id, "vit_small_patch16_224",
                                                                               384)
    assert "newest pretrained encoder" in by_default.params["encoder"]
    result = cli("embed", "--project", "sel", "--img-size", "32")
    assert result.exit_code == 0, result.output
    assert f"encoder: checkpoint {checkpoint.id}" in result.output and "384" in result.output
    result = cli("embed", "--project", "sel", "--img-size", "32", "--checkpoint", str(run))
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        newest = artifacts.list_embedding_sets(session, projects.get_project(session, "sel").id)[0]
    assert (newest.checkpoint_id, newest.dim) == (checkpoint.id, 384)
    baseline = embed_project("sel", img_size=32, batch_size=8, random_init=True, settings=settings)
    assert (baseline.checkpoint_id, baseline.dim, baseline.params["encoder"]) == (
        None, 192, "random-init vit_tiny_patch16_224, as asked")
    with pytest.raises(EmbeddingSetError, match="random init and a checkpoint exclude each other"):
        embed_project("sel", checkpoint_id=checkpoint.id, random_init=True, settings=settings)
    result = cli("jobs", "submit", "embed", "--params", f'{{"project": "sel", "random_init": true, '
                                                        f'"checkpoint_id": {checkpoint.id}}}')
    assert result.exit_code == 1 and "random init and checkpoint_id exclude each other" in result.output
    result = cli("embed", "--project", "sel", "--random-init", "--checkpoint", str(run))
    assert result.exit_code == 2 and "--random-init and --checkpoint exclude each other" in result.output


@pytest.mark.parametrize("options,message", [
    (["--img-size", "0"], "'--img-size': 0 is not in the range 16<=x<=4096"),
    (["--img-size", "100000"], "'--img-size': 100000 is not in the range"),
    (["--batch-size", "0"], "'--batch-size': 0 is not in the range x>=1"),
    (["--workers", "-2"], "'--workers': -2 is not in the range x>=0"),
    (["--vector", "x"], "'--vector': 'x' is not one of"),
    (["--checkpoint", "nowhere"], "nowhere is neither a weights file"),
])
def test_embed_cli_refuses_sizes_and_options_it_cannot_use(options: list[str], message: str, embedded, cli,
                                                           engine) -> None:
    """The embed options share the embed job's limits (`--img-size 0` ran, `--batch-size 0` ended in Python's
    `range() arg 3 must not be zero`, `--img-size 100000` killed a DataLoader worker); nothing is registered."""
    from segloop.platform.db.stores import artifacts

    result = cli("embed", "--project", "sel", *options)
    assert result.exit_code == 2 and message in result.output, result.output
    with session_scope(engine) as session:
        assert len(artifacts.list_embedding_sets(session, projects.get_project(session, "sel").id)) == 1
