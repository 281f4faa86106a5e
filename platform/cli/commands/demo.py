"""`segloop demo`: the loop end to end on embedded defaults (grows with each stage of the loop).

ingest → self-supervised pretraining on the footage → embed → select frames to label → label them
(a simulated annotator reads ground truth when the footage has it; otherwise the Label page is next)
→ propagate the labels to every frame → J&F of the propagated masks against the ground truth → fine-tune a
segmentation head → mIoU on the frames nobody labelled. Ingest and pretraining are the demo's own; from the
embeddings on, the demo is one round of the loop (`services.loop.run_round`, as `segloop loop round`), shown
as numbered steps. Each run is one more round: earlier picks stay labelled and new picks are added.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import click

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.console import FiniteFloatRange, console, print_table, progress_bar
from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.settings import SHARED_SAMPLE, load_settings
from segloop.platform.db.migrate import ensure_db
from segloop.platform.services.loop import (
    RoundConfig,
    RoundObserver,
    oracle_from,
    propagate_labels,
    require_ground_truth,
    run_round,
)
from segloop.platform.vos.propagation import PropagationConfig

DEMO_CONFIG = "cpu_10min_vit_tiny.yaml"
DEMO_SHORT_SIDE = 240
DEMO_RADIUS = 6
DEMO_MAX_PER_VIDEO = 3
DEMO_MIN_GAP = 2


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
        candidate = DavisLayout(root).masks_dir
        if candidate.is_dir():
            return candidate
    return None


def _step(number: int, text: str) -> None:
    """Print a numbered step heading."""
    console.print(f"{number}. {text}", style="bold")


@click.command("demo")
@click.option("--footage", type=click.Path(path_type=Path), default=None,
              help="Videos or DAVIS-layout frame folders "
                   "(default: ../shared/data/davis-sample/videos, else synthetic).")
@click.option("--project", default="demo", show_default=True)
@click.option("--pretrain-minutes", type=FiniteFloatRange(min=0), default=2.0, show_default=True,
              help="CPU/GPU minutes of self-supervised pretraining (0: skip, use a random-init backbone).")
@click.option("--strategy", default="kcenter", show_default=True, help="Selection strategy for this round.")
@click.option("--budget", type=click.IntRange(min=1), default=8, show_default=True, help="Frames to label this round.")
@click.option("--oracle", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Ground-truth masks <DIR>/<video>/%05d.png to simulate the annotator "
                   "(default: found next to the footage).")
@friendly_errors
def command(footage: Path | None, project: str, pretrain_minutes: float, strategy: str, budget: int,
            oracle: Path | None) -> None:
    """Run the loop as far as segloop has it, on embedded defaults, and summarise."""
    from segloop.platform.cli.commands.ingest import ingest_with_progress, print_report
    from segloop.platform.db.migrate import current_revision
    from segloop.platform.media.ingest import IngestOptions, discover
    from segloop.selectors.registry import get_strategy

    get_strategy(strategy)  # an unknown strategy is refused before minutes of ingest and pretraining
    settings = load_settings()
    engine = ensure_db()
    _step(1, f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
    footage = footage or default_footage()
    oracle = oracle_from(oracle or default_oracle(footage))
    if oracle is not None:  # before anything is stored: a refused demo leaves no project, video or frame behind
        oracle.require([source.name for source in discover([footage])[0]])
    _step(2, f"ingest {footage} into project {project!r}")
    report = ingest_with_progress([footage], IngestOptions(project=project))
    print_report(report)
    if report.failed:
        sys.exit(1)
    if oracle is not None:  # the project's other videos too, before minutes of pretraining
        require_ground_truth(project, oracle, settings)
    checkpoint = _pretrain(project, pretrain_minutes, settings)
    config = round_config(checkpoint, strategy, budget)
    observer = DemoObserver()
    result = run_round(project, config, oracle, settings=settings, observer=observer)
    summary = [("embedding set", observer.embedding_set(result.embedding_set_id)),
               ("selection run", f"{result.selection_id}: {strategy}, {len(result.picked)} frames"
                                 if result.selection_id is not None else "none: nothing left to pick")]
    if result.status == "nothing to label":
        console.print("Every frame already has human masks: scoring propagation from each video's first frame "
                      "against them instead.")
        propagate_labels(project, config, settings, observer, keyframes="first")
        summary += observer.mean_jf
    elif result.status == "awaiting labels":
        console.print("No ground truth next to the footage: label the picked frames on the Label page (make ui), "
                      "then run `segloop vos propagate --video ID`.")
    else:
        summary.append(("frames labelled this round", result.newly_labeled))
        summary += observer.mean_jf
        summary += [("VSS checkpoint", result.checkpoint_id),
                    ("VSS mIoU on frames nobody labelled",
                     f"{result.metrics['mIoU']:.3f} ({result.evaluated_on} frames, trained on {result.trained_on})"
                     if "mIoU" in result.metrics else f"n/a (every frame is labelled; trained on {result.trained_on})")]
    _summarise(project, report, summary, settings)


def round_config(checkpoint, strategy: str, budget: int) -> RoundConfig:
    """The demo's round: its selection constraints and propagation settings, the pretrained backbone if any."""
    return RoundConfig(strategy=strategy, budget=budget, min_gap_frames=DEMO_MIN_GAP, max_per_video=DEMO_MAX_PER_VIDEO,
                       backbone=checkpoint.backbone if checkpoint else DEFAULT_BACKBONE,
                       pretrained=checkpoint.path if checkpoint else None,
                       pretrained_id=checkpoint.id if checkpoint else None,
                       propagation=PropagationConfig(short_side=DEMO_SHORT_SIDE, radius=DEMO_RADIUS))


class DemoObserver(RoundObserver):
    """Shows the round as the demo's numbered steps, progress bars and tables."""

    NUMBERS = {"embed": 4, "select": 5, "label": 6, "propagate": 7, "train": 8}

    def __init__(self) -> None:
        self.mean_jf: list[tuple] = []

    def step(self, name: str, message: str) -> None:
        """A numbered heading."""
        _step(self.NUMBERS[name], message)

    def selected(self, selection_id: int) -> None:
        """The ranked picks."""
        from segloop.platform.cli.commands.select import _print_run
        from segloop.platform.services.selection import show_selection

        _print_run(*show_selection(selection_id))

    def propagated(self, videos: list[dict], unlabelled: int) -> None:
        """J&F per video, and the mean for the summary."""
        rows = [(v["video_name"], len(v["keyframes"]), v["drafts"], v["scored_frames"],
                 *(f"{v['scores'][k]:.3f}" for k in ("J&F", "J", "F"))) for v in videos if v["scores"]]
        print_table("propagated masks vs ground truth (frames that were not labelled)",
                    ["video", "labelled frames", "drafts", "scored frames", "J&F", "J", "F"], rows)
        scores = [v["scores"]["J&F"] for v in videos if v["scores"]]
        note = f" ({unlabelled} videos without labels yet: run the demo again for another round)" if unlabelled else ""
        self.mean_jf = [("mean J&F over labelled videos",
                         f"{sum(scores) / len(scores):.3f}{note}" if scores else "n/a")]

    @contextmanager
    def task(self, label: str) -> Iterator:
        """A progress bar."""
        with progress_bar(label) as report:
            yield report

    @staticmethod
    def embedding_set(embedding_set_id: int | None) -> str:
        """'id (count x dim)' of the round's embedding set."""
        from segloop.platform.db.engine import session_scope
        from segloop.platform.db.stores import artifacts

        with session_scope() as session:
            info = artifacts.get_embedding_set(session, embedding_set_id)
        return f"{info.id} ({info.count} x {info.dim})"


def _pretrain(project: str, minutes: float, settings):
    """Pretrain on the project's frames (reusing the newest checkpoint of an earlier demo run)."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import artifacts, projects

    if minutes <= 0:
        _step(3, f"pretraining skipped: random-init {DEFAULT_BACKBONE}")
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
    loss = "n/a (no step finished in time)" if result.last_loss is None else f"{result.last_loss:.3f}"
    console.print(f"   step {result.step}, last loss {loss}; teacher backbone {result.teacher_path}")
    return checkpoint


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
    console.print("Open the web UI with `make ui` (or `segloop ui`), then http://127.0.0.1:8501")
