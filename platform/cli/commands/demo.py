"""`segloop demo`: the loop end to end on embedded defaults (grows with each stage of the loop).

ingest → self-supervised pretraining on the footage → embed → select frames to label → label them
(a simulated annotator reads ground truth when the footage has it; otherwise the Label page is next)
→ propagate the labels to every frame → J&F of the propagated masks against the ground truth.
Each run is one more round: earlier picks stay labelled and new picks are added.
"""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import click

from segloop.platform.core.console import console, print_table, progress_bar
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.settings import SHARED_SAMPLE, load_settings
from segloop.platform.db.migrate import ensure_db

DEMO_CONFIG = "cpu_10min_vit_tiny.yaml"
DEMO_SHORT_SIDE = 240
DEMO_RADIUS = 6
DEMO_MAX_PER_VIDEO = 3


def default_footage() -> Path:
    """The shared DAVIS sample videos when present, else synthetic footage made once under the data dir."""
    sample = SHARED_SAMPLE / "videos"
    if sample.is_dir():
        return sample
    from segloop.platform.media.synth import SynthOptions, synthesize

    synth_root = load_settings().data_dir / "synth"
    if not (synth_root / "videos").is_dir():
        console.print(f"shared sample not found at {SHARED_SAMPLE}; generating synthetic footage in {synth_root}")
        synthesize(synth_root, SynthOptions())
    return synth_root / "videos"


def default_oracle(footage: Path) -> Path | None:
    """Ground-truth masks next to the footage (DAVIS layout: <root>/Annotations/480p), if any."""
    for root in (footage, footage.parent):
        candidate = root / "Annotations" / "480p"
        if candidate.is_dir():
            return candidate
    return None


def _step(number: int, text: str) -> None:
    """Print a numbered step heading."""
    console.print(f"[bold]{number}. {text}[/bold]")


@click.command("demo")
@click.option("--footage", type=click.Path(path_type=Path), default=None,
              help="Videos or DAVIS-layout frame folders (default: ../shared/data/davis-sample/videos, else synthetic).")
@click.option("--project", default="demo", show_default=True)
@click.option("--pretrain-minutes", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="CPU/GPU minutes of self-supervised pretraining (0: skip, use a random-init backbone).")
@click.option("--strategy", default="kcenter", show_default=True, help="Selection strategy for this round.")
@click.option("--budget", type=click.IntRange(min=1), default=8, show_default=True, help="Frames to label this round.")
@click.option("--oracle", type=click.Path(path_type=Path), default=None,
              help="Ground-truth masks <DIR>/<video>/%05d.png to simulate the annotator (default: found next to the footage).")
@friendly_errors
def command(footage: Path | None, project: str, pretrain_minutes: float, strategy: str, budget: int,
            oracle: Path | None) -> None:
    """Run the loop as far as segloop has it, on embedded defaults, and summarise."""
    from segloop.platform.cli.commands.ingest import ingest_with_progress, print_report
    from segloop.platform.db.migrate import current_revision
    from segloop.platform.media.ingest import IngestOptions

    settings = load_settings()
    engine = ensure_db()
    _step(1, f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
    footage = footage or default_footage()
    _step(2, f"ingest {footage} into project {project!r}")
    report = ingest_with_progress([footage], IngestOptions(project=project))
    print_report(report)
    if report.failed:
        sys.exit(1)
    checkpoint = _pretrain(project, pretrain_minutes, settings)
    embedding_set = _embed(project, checkpoint)
    run = _select(project, strategy, budget, embedding_set.id)
    oracle = oracle or default_oracle(footage)
    summary = [("embedding set", f"{embedding_set.id} ({embedding_set.count} x {embedding_set.dim})"),
               ("selection run", f"{run.selection.id}: {strategy}, {len(run.items)} frames")]
    if not run.items:
        console.print("Every frame already has human masks: scoring propagation from each video's first frame "
                      "against them instead.")
        summary += _propagate_and_score(project, checkpoint, settings, keyframes="first")
    elif oracle is None:
        console.print("No ground truth next to the footage: label the picked frames on the Label page (make ui), "
                      "then run `segloop vos propagate --video ID`.")
    else:
        from segloop.platform.services.oracle import DavisOracle, label_selection

        truth = DavisOracle(Path(oracle))
        _step(6, f"label the picked frames (simulated annotator reading {oracle})")
        summary.append(("frames labelled this round", label_selection(run.selection.id, truth, settings)))
        summary += _propagate_and_score(project, checkpoint, settings, truth=truth)
        summary += _finetune_and_score(project, checkpoint, truth, settings)
    _summarise(project, report, summary, settings)


def _pretrain(project: str, minutes: float, settings):
    """Pretrain on the project's frames (reusing the newest checkpoint of an earlier demo run)."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import artifacts, projects

    if minutes <= 0:
        _step(3, "pretraining skipped: random-init vit_tiny_patch16_224")
        return None
    with session_scope(get_engine(settings)) as session:
        existing = artifacts.list_checkpoints(session, projects.get_project(session, project).id, kind="pretrain")
    if existing and Path(existing[0].path).is_file():
        _step(3, f"pretraining: reusing checkpoint {existing[0].id} ({existing[0].path})")
        return existing[0]
    from segloop.platform.services.pretraining import pretrain_project
    from segloop.pretrain.config import load_config

    config_file = resources.files("segloop.pretrain") / "configs" / DEMO_CONFIG
    config = load_config(Path(str(config_file)), {"run": {"max_minutes": minutes}})
    out_dir = settings.runs_dir / "pretrain" / project
    _step(3, f"self-supervised pretraining of {config.model.backbone} for at most {minutes:g} min -> {out_dir}")
    with progress_bar("pretrain") as report:
        result, checkpoint = pretrain_project(project, config, out_dir, resume=True, settings=settings, progress=report)
    console.print(f"   step {result.step}, last loss {result.last_loss:.3f}; teacher backbone {result.teacher_path}")
    return checkpoint


def _embed(project: str, checkpoint):
    """Embed every frame with the pretrained (or random) backbone, reusing an up-to-date set."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import artifacts, projects
    from segloop.platform.db.stores import footage as footage_store
    from segloop.platform.services.embedding import embed_project

    backbone = checkpoint.backbone if checkpoint else "vit_tiny_patch16_224"
    with session_scope(get_engine()) as session:
        project_id = projects.get_project(session, project).id
        sets = artifacts.list_embedding_sets(session, project_id)
        frames = footage_store.count_frames(session, project_id)
    wanted = checkpoint.id if checkpoint else None
    if sets and sets[0].checkpoint_id == wanted and sets[0].backbone == backbone and sets[0].count == frames:
        _step(4, f"embeddings: reusing embedding set {sets[0].id}")
        return sets[0]
    _step(4, f"embed every frame with {backbone}")
    with progress_bar("embed") as report:
        return embed_project(project, backbone, checkpoint.path if checkpoint else None, img_size=112,
                             checkpoint_id=checkpoint.id if checkpoint else None, progress=report)


def _select(project: str, strategy: str, budget: int, embedding_set_id: int):
    """Pick the frames to label this round."""
    from segloop.platform.cli.commands.select import _print_run
    from segloop.platform.services.selection import run_selection, show_selection
    from segloop.selectors.constraints import Constraints

    _step(5, f"select {budget} frames to label with {strategy!r}")
    constraints = Constraints(budget=budget, min_gap_frames=2, max_per_video=DEMO_MAX_PER_VIDEO)
    run = run_selection(project, strategy, constraints, {}, embedding_set_id)
    shown, where = show_selection(run.selection.id)
    _print_run(shown, where)
    return run


def _propagate_and_score(project: str, checkpoint, settings, truth=None, keyframes: str | None = None) -> list[tuple]:
    """Propagate each labelled video's human masks to its other frames; J&F against `truth` or held-out masks."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import footage as footage_store
    from segloop.platform.db.stores import projects
    from segloop.platform.services.propagation import human_label_maps, propagate_video
    from segloop.platform.vos import propagation as vos

    backbone = checkpoint.backbone if checkpoint else "vit_tiny_patch16_224"
    config = vos.PropagationConfig(short_side=DEMO_SHORT_SIDE, radius=DEMO_RADIUS)
    featurizer = vos.make_featurizer("backbone", backbone, checkpoint.path if checkpoint else None, config)
    _step(7, f"propagate the labels to every frame ({backbone}, short side {DEMO_SHORT_SIDE}) and score J&F")
    with session_scope(get_engine(settings)) as session:
        videos = footage_store.list_videos(session, projects.get_project(session, project).id)
        labelled = [v for v in videos if human_label_maps(session, v) and (truth is None or truth.covers(v.name))]
    rows, scores = [], []
    for video in labelled:
        reference = None if truth is None else _reference(truth, video, settings)
        with progress_bar(video.name) as report:
            result = propagate_video(video.id, featurizer, config, keyframes, settings=settings, reference=reference,
                                     checkpoint_id=checkpoint.id if checkpoint else None,
                                     on_frame=lambda done, total: report(done / total, f"{done}/{total}"))
        if result.scores:
            rows.append((video.name, len(result.keyframes), result.drafts, result.scored_frames,
                         *(f"{result.scores[k]:.3f}" for k in ("J&F", "J", "F"))))
            scores.append(result.scores["J&F"])
    print_table("propagated masks vs ground truth (frames that were not labelled)",
                ["video", "labelled frames", "drafts", "scored frames", "J&F", "J", "F"], rows)
    unlabelled = len(videos) - len(labelled)
    note = f" ({unlabelled} videos without labels yet: run the demo again for another round)" if unlabelled else ""
    return [("mean J&F over labelled videos", f"{sum(scores) / len(scores):.3f}{note}" if scores else "n/a")]


def _finetune_and_score(project: str, checkpoint, truth, settings) -> list[tuple]:
    """Fine-tune a VSS head (background vs object) on the labelled frames, predict every frame, score mIoU."""
    from segloop.platform.services.finetuning import finetune_vss_project, load_project, predict_project
    from segloop.platform.services.loop import oracle_reference

    backbone = checkpoint.backbone if checkpoint else "vit_tiny_patch16_224"
    _step(8, f"fine-tune a segmentation head on the labelled frames ({backbone}), predict every frame, score mIoU")
    frames = load_project(project, settings)
    out_dir = settings.runs_dir / "finetune" / project / f"demo-{len(frames.labeled())}-labels"
    with progress_bar("fine-tune") as report:
        result = finetune_vss_project(project, out_dir, pretrained=checkpoint.path if checkpoint else None,
                                      backbone=backbone, reference=oracle_reference(truth, frames, settings),
                                      settings=settings, progress=report)
    predict_project(project, result.checkpoint_id, settings=settings)
    return [("VSS checkpoint", result.checkpoint_id),
            ("VSS mIoU on frames nobody labelled", f"{result.metrics.get('mIoU', float('nan')):.3f} "
                                                   f"({result.evaluated_on} frames, trained on {result.trained_on})")]


def _reference(truth, video, settings):
    """frame index -> ground-truth label map of one video, from the simulated annotator's masks."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import footage as footage_store

    with session_scope(get_engine(settings)) as session:
        sources = [f.source_index for f in footage_store.list_frames(session, video.id)]
    return lambda index: truth.label_map(video.name, sources[index], (video.stored_width, video.stored_height))


def _summarise(project: str, report, extra: list[tuple], settings) -> None:
    """Final tables: per video and overall."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import footage as footage_store
    from segloop.platform.db.stores import projects
    from segloop.platform.services.selection import labeled_frame_ids

    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        videos = footage_store.list_videos(session, info.id)
        rows = [(v.name, v.source_kind, v.frame_count, f"{v.width}x{v.height}", f"{v.fps:.2f}" if v.fps else "",
                 v.codec, len({f.dup_group for f in footage_store.list_frames(session, v.id)}))
                for v in videos]
        total_frames = footage_store.count_frames(session, info.id)
        annotated = len(labeled_frame_ids(session, info.id))
    print_table(f"project {project}", ["video", "kind", "frames", "size", "fps", "codec", "near-dup groups"], rows)
    print_table("summary", ["what", "value"], [
        ("videos", len(videos)), ("frames", total_frames), ("human-labelled frames", annotated),
        ("ingest seconds (this run)", f"{report.seconds:.1f}"), *extra, ("data dir", settings.data_dir.resolve()),
    ])
    console.print("Open the web UI with [bold]make ui[/bold] (or `segloop ui`), then http://127.0.0.1:8501")
