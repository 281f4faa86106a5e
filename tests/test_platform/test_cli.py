"""The `segloop` command line end to end: synth, demo, jobs, bench."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import invoke_segloop


def test_help_lists_the_commands(cli) -> None:
    """Every top-level command is registered."""
    output = cli("--help").output
    for name in ("db", "ingest", "synth", "jobs", "worker", "export", "import", "demo", "ui", "bench"):
        assert f"  {name} " in output


def test_synth_writes_davis_layout_and_mp4(cli, tmp_path: Path) -> None:
    """`segloop synth` writes frames, palette masks and an mp4 per video."""
    result = cli("synth", str(tmp_path / "s"), "--videos", "2", "--frames", "5", "--size", "64x48", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s/JPEGImages/480p/synth-003-001").glob("*.jpg"))) == 5
    assert len(list((tmp_path / "s/Annotations/480p/synth-003-001").glob("*.png"))) == 5
    assert (tmp_path / "s/videos/synth-003-000.mp4").stat().st_size > 0
    for size, reason in (("63x48", "must be even"), ("0x0", "must be 32..4096 pixels"),
                         ("64x8", "must be 32..4096 pixels"), ("8192x64", "must be 32..4096 pixels")):
        refused = cli("synth", str(tmp_path / "x"), "--size", size)
        assert refused.exit_code == 1 and reason in refused.output, refused.output  # 0x0: a cv2 traceback before
        assert not (tmp_path / "x").exists()
    refused = cli("synth", str(tmp_path / "x"), "--seed", "-1")  # numpy's "expected non-negative integer" before
    assert refused.exit_code == 2 and "'--seed': -1 is not in the range x>=0" in refused.output, refused.output
    assert not (tmp_path / "x").exists()


def test_demo_runs_the_loop_twice(cli, synth_root: Path) -> None:
    """Ingest, pretrain, embed, select, simulated labels, propagation + J&F; the second run is a new round."""
    first = cli("demo", "--footage", str(synth_root / "videos"), "--pretrain-minutes", "0.05", "--budget", "3")
    assert first.exit_code == 0, first.output
    for step in ("2. ingest", "3. self-supervised pretraining", "4. embed", "5. select 3 frames",
                 "6. label the picked frames", "7. propagate", "8. fine-tune"):
        assert step in first.output
    assert "videos ingested: 2" in first.output and "make ui" in first.output
    assert "mean J&F over labelled videos" in first.output and "VSS mIoU on frames nobody labelled" in first.output
    second = cli("demo", "--footage", str(synth_root / "videos"), "--pretrain-minutes", "0.05", "--budget", "3")
    assert second.exit_code == 0, second.output
    assert "videos ingested: 0, skipped: 2" in second.output
    assert "pretraining: reusing checkpoint" in second.output and "embeddings: reusing" in second.output
    assert "selection run" in second.output and "2: kcenter" in second.output


def test_demo_falls_back_to_synthetic_footage(cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the shared sample, the demo generates footage (with ground truth) under the data dir."""
    import segloop.platform.cli.commands.demo as demo

    monkeypatch.setattr(demo, "SHARED_SAMPLE", data_dir / "no-such-sample")
    result = cli("demo", "--pretrain-minutes", "0", "--budget", "2")
    assert result.exit_code == 0, result.output
    assert (data_dir / "synth" / "videos").is_dir()
    assert "videos ingested: 3" in result.output and "7. propagate" in result.output


def test_demo_on_a_fully_labelled_davis_root_scores_propagation(cli, synth_root: Path) -> None:
    """DAVIS-layout footage imports every mask; the demo then scores propagation from first frames."""
    result = cli("demo", "--footage", str(synth_root), "--pretrain-minutes", "0", "--budget", "2")
    assert result.exit_code == 0, result.output
    assert "masks: " in result.output and "Every frame already has human masks" in result.output
    assert "mean J&F over labelled videos" in result.output


def test_demo_without_ground_truth_points_to_the_label_page(cli, synth_root: Path) -> None:
    """Footage without masks stops after selection and says how to label."""
    result = cli("demo", "--footage", str(synth_root / "videos" / "synth-007-000.mp4"), "--pretrain-minutes", "0",
                 "--budget", "2")
    assert result.exit_code == 0, result.output
    assert "label the picked frames on the Label page" in result.output


def test_jobs_cli_errors_are_clear(cli) -> None:
    """Bad JSON, unknown kinds and unknown jobs give a message and exit non-zero."""
    assert "not valid JSON" in cli("jobs", "submit", "ingest", "--params", "{").output
    result = cli("jobs", "submit", "ingest", "--params", '{"paths": ["a"], "x": 1}')
    assert result.exit_code == 1 and "ingest params: x: unknown field" in result.output
    result = cli("jobs", "show", "42")
    assert result.exit_code == 1 and "job 42 does not exist" in result.output
    assert cli("jobs", "kinds").exit_code == 0


def test_jobs_cancelled_or_retried_on_the_command_line_are_audited(cli, engine) -> None:
    """`jobs cancel` and `jobs retry` left no audit row (the web UI's did): both are in the trail now."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import projects
    from segloop.platform.services import auth

    with session_scope(engine) as session:
        projects.get_or_create_project(session, "p")
    submitted = cli("jobs", "submit", "select", "--params", '{"project": "p", "strategy": "random", "budget": 1}')
    assert submitted.exit_code == 0, submitted.output
    assert cli("jobs", "cancel", "1").exit_code == 0
    assert cli("jobs", "retry", "1").exit_code == 0
    trail = [(e.action, e.target) for e in auth.audit_trail(engine, limit=10)]
    assert ("job_cancel", "job 1") in trail and ("job_retry", "job 1") in trail, trail


def test_names_with_brackets_are_printed_as_given(cli, synth_root: Path, tmp_path: Path) -> None:
    """Rich read "[x]" in a name as markup: `ingest` printed `clip.mp4` for `clip[x].mp4`, `jobs show` lost `[lnk]`."""
    import shutil

    video = tmp_path / "clip[x] [red]b.mp4"
    shutil.copy(sorted((synth_root / "videos").iterdir())[0], video)
    ingested = cli("ingest", "--project", "p[1]", str(video))
    assert ingested.exit_code == 0 and "clip[x] [red]b.mp4" in " ".join(ingested.output.split()), ingested.output
    listed = cli("tags", "list", "--project", "p[1]")
    assert listed.exit_code == 0, listed.output
    submitted = cli("jobs", "submit", "select", "--params", '{"project": "p[1]", "strategy": "random", "budget": 1}')
    assert submitted.exit_code == 0, submitted.output
    assert '"project": "p[1]"' in cli("jobs", "show", "1").output


def test_bench_ingest_writes_json(cli, synth_root: Path, tmp_path: Path) -> None:
    """`segloop bench ingest` measures all three figures and saves them."""
    out = tmp_path / "b.json"
    result = cli("bench", "ingest", str(synth_root / "videos" / "synth-007-000.mp4"), "--repeats", "1",
                 "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["frames"] == 12 and data["frames_stored"] == 12
    for key in ("ingest_end_to_end_fps", "decode_decord_fps", "decode_pyav_fps"):
        assert data[key] > 0
    # The same video twice is stored once: the ingest rate counted 24 frames for 12 stored (about 2x too fast).
    video = synth_root / "videos" / "synth-007-000.mp4"
    twice = cli("bench", "ingest", str(video), str(video), "--repeats", "1", "--json", str(out))
    data = json.loads(out.read_text())
    assert twice.exit_code == 0 and data["frames"] == 24 and data["frames_stored"] == 12
    assert data["ingest_end_to_end_fps"] == 12 / data["seconds"]["ingest"]
    (tmp_path / "notes.mp4").write_text("not a video")  # was a decord traceback naming decord's source files
    refused = cli("bench", "ingest", str(tmp_path / "notes.mp4"), "--repeats", "1")
    assert refused.exit_code == 1 and "notes.mp4" in refused.output and "Traceback" not in refused.output
    assert "video_reader.cc" not in refused.output, refused.output
    many = cli("bench", "select", "--threads", "100000")
    assert many.exit_code == 2 and "100000 is not in the range 1<=x<=256" in many.output, many.output


def test_bench_vos_reports_the_median_of_its_repeats(cli, tmp_path: Path) -> None:
    """`segloop bench vos` times each working resolution `--repeats` times and keeps the median rates."""
    out = tmp_path / "vos.json"
    result = cli("bench", "vos", "--frames", "3", "--height", "96", "--width", "160", "--methods", "pixels",
                 "--short-sides", "96,64", "--repeats", "2", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["repeats"] == 2 and [row["short_side"] for row in data["results"]] == [96, 64]
    for row in data["results"]:
        assert row["repeats"] == 2 and row["end_to_end_fps"] > 0
        assert abs(row["features_ms_per_frame"] * row["features_fps"] - 1000) < 1e-6
    assert data["results"][1]["time_ratio_vs_smallest"] == 1.0


@pytest.mark.parametrize(("args", "option", "reason"), [
    (("pretrain", "--sizes", ","), "--sizes", "give at least one"),
    (("pretrain", "--sizes", "8"), "--sizes", "at least 16"),
    (("embed", "--sizes", " , "), "--sizes", "give at least one"),
    (("embed", "--frames", "ROOT", "--sizes", "112,100000"), "--sizes", "at most 4096"),  # the OOM killer before
    (("pretrain", "--sizes", "64,100000"), "--sizes", "at most 2048"),
    (("vos", "--short-sides", "480,100000"), "--short-sides", "at most 4096"),
    (("keyframes", "ROOT", "--short-side", "100000"), "--short-side", "100000 is not in the range 16<=x<=4096"),
    (("vos", "--methods", ","), "--methods", "give at least one"),
    (("vos", "--short-sides", "480,x"), "--short-sides", "expected comma-separated integers"),
    (("select", "--nprobe", ""), "--nprobe", "give at least one"),
    (("keyframes", "ROOT", "--strategies", ","), "--strategies", "give at least one"),
    (("keyframes", "ROOT", "--budgets", "2,0"), "--budgets", "at least 1"),
    (("vss", "ROOT", "--variants", ","), "--variants", "give at least one"),
    (("vss", "ROOT", "--protocols", ","), "--protocols", "give at least one"),
    (("active-learning", "ROOT", "--strategies", ","), "--strategies", "give at least one"),
    (("active-learning", "ROOT", "--budgets", ","), "--budgets", "give at least one"),
])
def test_bench_list_options_refuse_an_empty_or_bad_list_by_name(data_dir: Path, synth_root: Path, tmp_path: Path,
                                                                  args, option, reason) -> None:
    """A comma-separated benchmark option with no usable value is refused naming the option, and nothing is written
    (before: an empty table and JSON with exit 0, or a traceback for `bench keyframes --strategies ,`)."""
    out = tmp_path / "bench.json"
    args = [str(synth_root) if a == "ROOT" else a for a in args]
    result = invoke_segloop("bench", *args, "--json", str(out))  # the benchmarks need no database
    assert result.exit_code == 2, result.output
    assert option in result.output and reason in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_embed_frames_refuses_a_vector_choice_it_would_ignore(data_dir: Path, synth_root: Path, tmp_path: Path) -> None:
    """`embed --frames` writes both vectors, so `--vector patch_mean` there was silently ignored; it is refused."""
    out = tmp_path / "emb.npy"
    result = invoke_segloop("embed", "--frames", str(synth_root), "--out", str(out), "--random-init", "--vector",
                            "patch_mean")
    assert result.exit_code == 2 and "--frames writes both (OUT.npy: CLS, OUT.patch_mean.npy)" in result.output
    assert not out.exists()


@pytest.mark.parametrize(("args", "exit_code", "message"), [
    (("scale", "--frames", "100", "--budget", "500", "--skip-ivf"), 2, "--budget 500 exceeds --frames 100"),
    (("scale", "--frames", "200", "--budget", "10"), 2, "--frames 200: the IVF-PQ index needs at least 256"),
    (("scale", "--frames", str(10**9), "--skip-ivf"), 1, "--frames 1000000000 x --dim 384 needs about 2861.0 GiB"),
    (("select", "--sizes", str(10**9)), 1, "1,000,000,000 vectors (--n, --sizes) x --dim 384 needs about"),
    (("vos", "--frames", "100000", "--methods", "pixels"), 1, "--frames 100000 of --height 480 x --width 854 needs"),
    (("vos", "--device", "tpu", "--methods", "pixels"), 1, "device 'tpu': expected 'auto', 'cpu'"),  # a traceback
])
def test_bench_sizes_it_cannot_measure_are_refused_before_any_work(data_dir: Path, tmp_path: Path, args, exit_code,
                                                                     message) -> None:
    """`bench scale` picking more frames than exist (before: it ran and reported 500 picks' rate for 100 picks),
    too few frames for its IVF-PQ index (before: refused after inserting them all), and either benchmark sized past
    this machine's memory (before: the kernel's OOM killer, no message) are refused by option, nothing written;
    so is `bench vos` on a device that does not exist (before: a DeviceError traceback)."""
    out = tmp_path / "bench.json"
    result = invoke_segloop("bench", *args, "--json", str(out))
    assert result.exit_code == exit_code and message in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (("synth", "FILE"), "Invalid value for 'OUT_DIR': Directory"),
    (("pretrain", "--frames", "ROOT", "--out", "FILE"), "Invalid value for '--out': Directory"),
    (("finetune", "vos", "--frames", "ROOT", "--out", "FILE"), "Invalid value for '--out': Directory"),
    (("finetune", "vss", "--project", "p", "--out", "FILE"), "Invalid value for '--out': Directory"),
    (("vos", "propagate", "ROOT", "--method", "pixels", "--out", "FILE"), "Invalid value for '--out': Directory"),
    (("eval", "vos", "--pred", "ROOT", "--gt", "ROOT", "--json", "DIR"), "Invalid value for '--json': File"),
    (("select", "--project", "p", "--strategy", "random", "--json", "DIR"), "Invalid value for '--json': File"),
    (("bench", "vos", "--methods", "pixels", "--json", "DIR"), "Invalid value for '--json': File"),
    (("bench", "keyframes", "ROOT", "--json", "DIR"), "Invalid value for '--json': File"),
])
def test_output_paths_of_the_wrong_kind_are_refused_before_any_work(data_dir: Path, synth_root: Path, tmp_path: Path,
                                                                     args, message) -> None:
    """An output folder that is an existing file, or an output JSON that is an existing folder, is refused as a
    usage error naming the option (before: FileExistsError / NotADirectoryError tracebacks, some after minutes of
    work); the file and folder are left as they were."""
    existing_file, existing_dir = tmp_path / "taken", tmp_path / "folder"
    existing_file.write_text("keep")
    existing_dir.mkdir()
    swap = {"FILE": str(existing_file), "DIR": str(existing_dir), "ROOT": str(synth_root)}
    result = invoke_segloop(*[swap.get(a, a) for a in args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert existing_file.read_text() == "keep" and list(existing_dir.iterdir()) == []


@pytest.mark.parametrize("args", [
    ("demo", "--pretrain-minutes", "nan"),
    ("select", "--project", "p", "--strategy", "random", "--min-gap-seconds", "inf"),
    ("vos", "propagate", "ROOT", "--method", "pixels", "--temperature", "nan"),
    ("finetune", "vss", "--project", "p", "--lr", "inf"),
    ("ingest", "ROOT", "--fps", "nan"),
])
def test_number_options_refuse_nan_and_infinity_by_name(data_dir: Path, synth_root: Path, args) -> None:
    """Every number option is finite (click's FloatRange lets nan and inf through: some reached a deep check under
    an internal name like 'run.max_minutes', `--min-gap-seconds inf` picked nothing), refused as a usage error."""
    args = [str(synth_root) if a == "ROOT" else a for a in args]
    result = invoke_segloop(*args)
    assert result.exit_code == 2 and f"Invalid value for '{args[-2]}'" in result.output, result.output
    assert f"{args[-1]!r} is not a finite number" in result.output and not data_dir.exists()


def test_demo_refuses_an_unknown_strategy_or_oracle_before_any_work(data_dir: Path, tmp_path: Path) -> None:
    """`demo --strategy nope` failed at step 5, after ingest, pretraining and embedding; a missing --oracle folder
    was found even later. Both are refused before the database exists."""
    result = invoke_segloop("demo", "--strategy", "nope")
    assert result.exit_code == 1 and "strategy 'nope' is unknown; known strategies:" in result.output, result.output
    result = invoke_segloop("demo", "--oracle", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "Invalid value for '--oracle'" in result.output, result.output
    assert not data_dir.exists()


def test_demo_refuses_an_oracle_without_the_footages_masks_before_pretraining(data_dir: Path, synth_root: Path) -> None:
    """`demo --oracle` on a folder holding no masks of the footage's videos (here: the frames' folder) was refused
    only in the round, after minutes of pretraining and embedding; then after ingest, leaving the project, its videos
    and frames behind; it is refused before anything is stored."""
    result = invoke_segloop("demo", "--footage", str(synth_root / "videos"), "--pretrain-minutes", "0.1",
                            "--oracle", str(synth_root / "JPEGImages" / "480p"))
    assert result.exit_code == 1 and "holds no ground-truth masks" in result.output, result.output
    assert "2. " not in result.output and "2 of the project's 2 videos" in " ".join(result.output.split())
    assert not (data_dir / "frames").exists() or not any((data_dir / "frames").iterdir())


def test_a_file_the_system_refuses_is_named_in_one_line(tmp_path: Path) -> None:
    """An output folder that cannot be created (a file stands in its way) is one line naming the path and the reason,
    before any work (before: the errno text, or a traceback for kinds other than not-found; then exit 1 after the
    work had started)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed")
    result = invoke_segloop("synth", str(blocker / "videos"), "--videos", "1", "--frames", "2", "--size", "32x32")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (f"Error: Invalid value for 'OUT_DIR': {blocker / 'videos'}: "
                                                      f"{blocker} is a file, not a folder")


def test_bench_scale_small(cli, tmp_path: Path) -> None:
    """`segloop bench scale` on a small synthetic project reports every measure."""
    out = tmp_path / "scale.json"
    result = cli("bench", "scale", "--frames", "3000", "--dim", "16", "--per-video", "500", "--budget", "20",
                 "--queries", "50", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())["results"]
    for key in ("db_insert_frames", "library_last_page", "faiss_build_exact", "faiss_build_ivfpq", "kcenter_greedy"):
        assert data[key]["seconds"] > 0
    assert 0 <= data["ivfpq_recall_at_10"] <= 1 and data["peak_rss_mib"] > 0


def test_pretrain_embed_select_on_a_project(cli, synth_root: Path, engine, tmp_path: Path) -> None:
    """`pretrain --project` registers a checkpoint, `embed --project` an embedding set linked to it, select uses it."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts, projects

    assert cli("ingest", str(synth_root / "videos"), "--project", "cli").exit_code == 0
    result = cli("pretrain", "--project", "cli", "--backbone", "vit_tiny_patch16_224", "--img-size", "32",
                 "--steps", "2", "--batch-size", "2", "--workers", "0", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "registered checkpoint" in result.output
    # A resume into the registered run's folder rewrote the files checkpoint 1 describes (also with --frames).
    stamp = (tmp_path / "run" / "teacher_backbone.pth").stat().st_mtime_ns
    for source in (["--project", "cli"], ["--frames", str(synth_root)]):
        again = cli("pretrain", *source, "--backbone", "vit_tiny_patch16_224", "--img-size", "32", "--steps", "4",
                    "--batch-size", "2", "--workers", "0", "--resume", "--out", str(tmp_path / "run"))
        assert again.exit_code == 1 and "holds registered checkpoint" in again.output, again.output
    assert (tmp_path / "run" / "teacher_backbone.pth").stat().st_mtime_ns == stamp
    result = cli("embed", "--project", "cli", "--checkpoint", str(tmp_path / "run" / "teacher_backbone.pth"),
                 "--img-size", "32")
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        project_id = projects.get_project(session, "cli").id
        checkpoint = artifacts.list_checkpoints(session, project_id)[0]
        embedding_set = artifacts.list_embedding_sets(session, project_id)[0]
    assert embedding_set.checkpoint_id == checkpoint.id and embedding_set.count == 24
    assert cli("select", "--project", "cli", "--strategy", "typicality", "--budget", "2").exit_code == 0
    assert cli("pretrain", "--out", str(tmp_path / "x")).exit_code == 1


@pytest.fixture
def demo_project(cli, synth_root: Path, engine, tmp_path: Path) -> dict:
    """Project 'demo' with the two synthetic videos and a registered vss checkpoint (not a pretrained backbone)."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts, footage, projects

    assert cli("ingest", str(synth_root / "videos"), "--project", "demo").exit_code == 0
    weights = tmp_path / "vss.pt"
    weights.write_bytes(b"not loaded at submit time")
    with session_scope(engine) as session:
        project = projects.get_project(session, "demo")
        videos = [v.id for v in footage.list_videos(session, project.id)]
        vss = artifacts.add_checkpoint(session, "vss", "vit_tiny_patch16_224", str(weights), project_id=project.id)
    return {"videos": videos, "vss_checkpoint": vss.id}


def _job_count(cli) -> int:
    """How many jobs `segloop jobs list` shows."""
    from segloop.platform.db.migrate import db_session
    from segloop.platform.db.stores import jobs as job_store

    output = cli("jobs", "list").output
    with db_session() as session:
        rows = job_store.list_jobs(session)
    assert all(f"│ {j.id} " in output for j in rows)
    return len(rows)


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("finetune_vss", {"project": "demo", "epochs": -3}, "finetune_vss params: epochs: must be >= 1, got -3"),
    ("finetune_vss", {"project": "demo", "checkpoint_id": 999},
     "finetune_vss params: checkpoint_id: checkpoint 999 does not exist"),
    ("finetune_vos", {"project": "demo", "checkpoint_id": "VSS"},
     "finetune_vos params: checkpoint_id: checkpoint VSS is a vss checkpoint; a pretrain checkpoint is needed"),
    ("finetune_vss", {"project": "demo", "backbone": "vit_huge"}, "finetune_vss params: backbone: must be one of"),
    ("embed", {"project": "demo", "backbone": "resnet50"}, "embed params: backbone: must be one of vit_tiny"),
    ("pretrain", {"project": "demo", "preset": "nope.yaml"},
     "pretrain params: preset: preset 'nope.yaml' does not exist; presets: cpu_10min_vit_tiny.yaml"),
    ("pretrain", {"project": "demo", "config": {"model": {"backbone": "resnet50"}}},
     "pretrain params: config: backbone 'resnet50' is unknown"),
    ("pretrain", {"project": "demo", "config": {"run": {"stepz": 1}}},
     "pretrain params: config: run.stepz: unknown field"),
    ("propagate", {"video_ids": [999]}, "propagate params: video_ids: video 999 does not exist"),
    ("propagate", {"video_ids": ["VIDEO"], "keyframes": "banana"},
     "propagate params: keyframes: 'banana' is not valid; expected first, uniform:K or comma-separated"),
    ("select", {"project": "demo", "strategy": "psychic"}, "select params: strategy: strategy 'psychic' is unknown"),
    ("predict", {"project": "nowhere", "checkpoint_id": "VSS"}, "predict params: project: project 'nowhere' does not"),
    ("map2d", {"embedding_set_id": 7}, "map2d params: embedding_set_id: embedding set 7 does not exist"),
    ("ingest", {"paths": ["/no/such/video.mp4"]}, "ingest params: paths: /no/such/video.mp4 does not exist"),
])
def test_jobs_submit_refuses_bad_values_and_queues_nothing(cli, demo_project: dict, kind: str, params: dict,
                                                            message: str) -> None:
    """Every bad value or reference is refused at submit time, naming the field; `jobs list` shows no new job."""
    filled = {k: (demo_project["vss_checkpoint"] if v == "VSS" else v) for k, v in params.items()}
    filled = {k: [demo_project["videos"][0] if x == "VIDEO" else x for x in v] if isinstance(v, list) else v
              for k, v in filled.items()}
    message = message.replace("VSS", str(demo_project["vss_checkpoint"]))
    before = _job_count(cli)
    result = cli("jobs", "submit", kind, "--params", json.dumps(filled))
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert _job_count(cli) == before


def test_jobs_submit_queues_good_params_with_defaults(cli, demo_project: dict) -> None:
    """A good submit is queued with every field of the spec filled in (the defaults the worker will use)."""
    from segloop.platform.db.migrate import db_session
    from segloop.platform.db.stores import jobs as job_store

    result = cli("jobs", "submit", "finetune_vss", "--params", '{"project": "demo", "epochs": 2, "lr": 0.01}')
    assert result.exit_code == 0, result.output
    with db_session() as session:
        [job] = job_store.list_jobs(session)
    assert job.params["epochs"] == 2 and job.params["layer_decay"] == 0.75 and job.params["lr"] == 0.01
    assert job.params["backbone"] == "vit_tiny_patch16_224"


def test_finetune_cli_options_are_the_job_fields(cli) -> None:
    """`segloop finetune vss` takes an option per finetune_vss param (plus --checkpoint, --out, --device)."""
    from segloop.platform.core.specs import describe
    from segloop.platform.services.params import FinetuneVSSParams

    help_text = cli("finetune", "vss", "--help").output
    for spec in describe(FinetuneVSSParams):
        if spec.name not in ("checkpoint_id", "weights"):
            assert f"--{spec.name.replace('_', '-')}" in help_text, spec.name
    result = cli("finetune", "vss", "--project", "demo", "--epochs", "-3")
    assert result.exit_code == 2 and "--epochs" in result.output
    for command in ("vss", "vos"):  # a negative seed failed after the features with "expected non-negative integer"
        result = cli("finetune", command, "--project", "demo", "--seed", "-1")
        assert result.exit_code == 2 and "Invalid value for '--seed': -1 is not in the range x>=0" in result.output
    result = cli("finetune", "vss", "--project", "nowhere", "--checkpoint", "999")
    assert result.exit_code == 1 and "project: project 'nowhere' does not exist" in result.output
    from segloop.platform.services import runs
    from segloop.platform.services.params import FinetuneVOSParams

    with pytest.raises(ValueError, match="device: the VOS model trains on the CPU"):  # accepted and ignored before
        runs.finetune_vos(FinetuneVOSParams(project="demo"), Path("unused"), device="cuda")


def test_a_pretrain_run_folder_is_accepted_wherever_weights_are(cli, demo_project, tmp_path: Path) -> None:
    """`--checkpoint RUN_DIR` (a `segloop pretrain --out` folder) on fine-tuning, and `weights` of a job: the folder
    is taken (before: 'neither a weights file nor a checkpoint id', 'is not a file'); a folder without the run's
    weights is refused by name."""
    import torch

    from segloop.pretrain.backbones import create_backbone

    run = tmp_path / "run"
    run.mkdir()
    torch.save(create_backbone("vit_tiny_patch16_224").state_dict(), run / "teacher_backbone.pth")
    for kind in ("vss", "vos"):
        result = cli("finetune", kind, "--project", "demo", "--checkpoint", str(run), "--steps" if kind == "vos"
                     else "--epochs", "1")
        assert result.exit_code == 1, result.output
        assert "label some frames first" in result.output or "has no human mask" in result.output, result.output
    result = cli("jobs", "submit", "finetune_vss", "--params", json.dumps({"project": "demo", "weights": str(run)}))
    assert result.exit_code == 0, result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("jobs", "submit", "finetune_vos", "--params", json.dumps({"project": "demo", "weights": str(empty)}))
    assert result.exit_code == 1 and "no teacher_backbone.pth in this folder" in result.output, result.output


def test_every_required_option_is_asked_for(data_dir: Path) -> None:
    """click 8.3+ takes an explicit default of None as a value, so options derived from a spec as required were
    never asked for: `tags add --tag x 1`, `finetune vss`, `predict` and `loop round` without --project ran on a
    project called 'default'. Every required option has no default, and leaving one out is a usage error."""
    import click

    from segloop.platform.cli.main import main

    def required_with_default(command: click.Command, path: str) -> list[str]:
        if isinstance(command, click.Group):
            return [found for name, sub in command.commands.items()
                    for found in required_with_default(sub, f"{path} {name}")]
        return [f"{path} --{p.name}" for p in command.params
                if isinstance(p, click.Option) and p.required and p.default is not None
                and "UNSET" not in repr(p.default)]

    assert required_with_default(main, "segloop") == []
    for args in (["tags", "add", "--tag", "x", "1"], ["predict"], ["loop", "round"]):
        result = invoke_segloop(*args)
        assert result.exit_code == 2 and "Missing option '--project'" in result.output, (args, result.output)
