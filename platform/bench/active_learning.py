"""`segloop bench active-learning ROOT`: which frames to label, by strategy and budget, for a VSS or VOS model.

On a DAVIS-layout root with full ground truth the benchmark plays the annotator. The root's frames are
ingested once (without their masks) into a scratch project under a work folder and embedded; every
simulation (strategy x budget x seed) then starts from a fresh copy of that project's database and runs
the loop's own rounds (`services.loop.run_round`, as `segloop demo` and `segloop loop round` do):
select → the simulated annotator labels the picks from ground truth → VSS: fine-tune the head of
`segloop finetune vss` (background vs object) and score mIoU on every frame that was NOT picked;
VOS: propagate each video's picked frames to its other frames and score J&F on the unpicked frames
(mean over the root's videos, a video without any pick counting 0).

Model-based strategies (uncertainty, hybrid) need predictions: the budget is spent over `rounds`
rounds, the first by `first_round` (kcenter), each later one by the strategy using the per-frame
uncertainty the previous round stored (VSS: `vss_entropy_mean` of its model; VOS: `vos_uncertainty`,
1 - propagation confidence). Other strategies spend the whole budget in one round.
The full-supervision ceiling is a k-fold cross-validation over all frames (label k-1 folds, the same
train-and-score step as a round, score the held-out fold).
"""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.console import OUT_FILE
from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.image import MAX_SIDE
from segloop.platform.core.settings import Settings

if TYPE_CHECKING:
    from segloop.platform.services.oracle import DavisOracle

MODEL_BASED = ("uncertainty", "hybrid")
DEFAULT_STRATEGIES = "random,uniform,kcenter,typicality,uncertainty,hybrid"
PROJECT = "bench"
SIGNALS = {"vss": "vss_entropy_mean", "vos": "vos_uncertainty"}


class BenchError(ValueError):
    """A root, budget or option the benchmark cannot use; the message names it."""


@dataclass
class DavisRoot:
    """Frame files and ground-truth files of a DAVIS-layout root."""

    root: Path
    frames: dict[str, list[Path]]
    masks: dict[str, list[Path]]

    @property
    def total(self) -> int:
        """All frames of the root."""
        return sum(len(v) for v in self.frames.values())


def load_davis_root(root: str | Path) -> DavisRoot:
    """Sequences of `root/JPEGImages/480p/<seq>/*.jpg` with one mask each in `root/Annotations/480p/<seq>/`."""
    root = Path(root)
    layout = DavisLayout(root)
    if not layout.images_dir.is_dir() or not layout.masks_dir.is_dir():
        raise BenchError(f"{root}: not a DAVIS-layout root (needs JPEGImages/480p and Annotations/480p)")
    frames, masks = {}, {}
    for seq in layout.sequences():
        jpgs = layout.frames(seq)
        pngs = [layout.masks_dir / seq / f"{p.stem}.png" for p in jpgs]
        missing = [p for p in pngs if not p.is_file()]
        if missing:
            raise BenchError(f"{missing[0]}: ground truth missing (the benchmark needs every frame's mask)")
        frames[seq], masks[seq] = jpgs, pngs
    if not frames:
        raise BenchError(f"{layout.images_dir}: no sequence with frames")
    return DavisRoot(root, frames, masks)


def parse_budget(text: str, total: int) -> tuple[str, int]:
    """('2%', frames) from '2%' (of all frames, at least 1) or an absolute count '12'; a budget must leave frames to
    score the model on."""
    text = text.strip()
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100.0
            if not 0 < fraction <= 1:
                raise ValueError
            count = max(1, int(round(fraction * total)))
        else:
            count = int(text)
            if count < 1:
                raise ValueError
    except ValueError:
        raise BenchError(f"--budgets: {text!r} is not a percentage in (0, 100] or a positive frame count") from None
    if count >= total:
        raise BenchError(f"--budgets: {text!r} labels all {total} frames of the root, leaving none to score the "
                         "model on; give fewer")
    return text, count


@dataclass
class ALOptions:
    """Benchmark settings (defaults: minutes on a 2-core CPU for the 4-sequence sample)."""

    task: str = "vss"
    strategies: list[str] = field(default_factory=lambda: DEFAULT_STRATEGIES.split(","))
    budgets: list[str] = field(default_factory=lambda: ["1%", "2%", "5%", "10%"])
    rounds: int = 2
    seeds: int = 3
    checkpoint: str | None = None
    backbone: str = DEFAULT_BACKBONE
    short_side: int = 192
    head: str = "multiscale"
    min_steps: int = 200
    first_round: str = "kcenter"
    ceiling_folds: int = 5
    prop_short_side: int = 240
    prop_radius: int = 6


def round_config(options: ALOptions, strategy: str, budget: int, seed: int, signal: str | None = None,
                 out_root: Path | None = None):
    """The loop's RoundConfig of one simulated round: the task's model, the strategy with this seed."""
    from segloop.platform.services.loop import RoundConfig
    from segloop.platform.vos.propagation import PropagationConfig
    from segloop.platform.vss.head import VSSConfig
    from segloop.selectors.registry import get_strategy

    accepted = get_strategy(strategy).params
    params = {"seed": seed} if "seed" in accepted else {}
    if "device" in accepted:
        params["device"] = "numpy" if strategy != "hybrid" else "auto"
    if signal is not None and "signal" in accepted:
        params["signal"] = signal
    vos_task = options.task == "vos"
    return RoundConfig(strategy=strategy, budget=budget, strategy_params=params, backbone=options.backbone,
                       pretrained=options.checkpoint, short_side=options.short_side,
                       vss=VSSConfig(head=options.head, min_steps=options.min_steps, seed=seed), train=not vos_task,
                       propagation=PropagationConfig(short_side=options.prop_short_side, radius=options.prop_radius)
                       if vos_task else None, out_root=out_root)


def round_plan(strategy: str, budget: int, options: ALOptions) -> list[tuple[str, int]]:
    """(strategy, frames) per round: model-based strategies after a first round by `first_round`."""
    if strategy not in MODEL_BASED:
        return [(strategy, budget)]
    rounds = max(2, options.rounds)
    sizes = [budget // rounds + (1 if r < budget % rounds else 0) for r in range(rounds)]
    return [(options.first_round if number == 0 else strategy, size)
            for number, size in enumerate(s for s in sizes if s > 0)]


@dataclass
class Workspace:
    """The scratch project every simulation copies: ingested frames, embeddings, feature cache, template DB."""

    settings: Settings
    oracle: DavisOracle
    videos: int

    @contextmanager
    def fresh_copy(self, key: str) -> Iterator[tuple[Settings, Path]]:
        """(settings on a copy of the template database, folder for its outputs); both removed afterwards."""
        from segloop.platform.db.engine import get_engine

        run_dir = self.settings.data_dir / "runs" / "simulations" / key
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        copy = run_dir / "segloop.db"
        with sqlite3.connect(self.settings.data_dir / "segloop.db") as source, sqlite3.connect(copy) as target:
            source.backup(target)
        settings = replace(self.settings, database_url=f"sqlite:///{copy.resolve()}")
        try:
            yield settings, run_dir
        finally:
            get_engine(settings).dispose()
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(self.settings.runs_dir / "predictions", ignore_errors=True)


def prepare_workspace(data: DavisRoot, options: ALOptions, work: Path, say: Callable[[str], None]) -> Workspace:
    """Ingest the root's frames (not its masks) into the scratch project and embed them, once per work folder."""
    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.migrate import ensure_schema
    from segloop.platform.media.ingest import IngestOptions, ingest_paths
    from segloop.platform.services.loop import ensure_embeddings, oracle_from

    settings = Settings(data_dir=Path(work))
    engine = get_engine(settings)
    ensure_schema(engine)
    say(f"ingest {data.total} frames of {len(data.frames)} sequences into {work}")
    report = ingest_paths([DavisLayout(data.root).images_dir], IngestOptions(project=PROJECT), settings)
    if report.failed:
        raise BenchError(f"{report.failed[0].source}: {report.failed[0].message}")
    say(f"embeddings ({options.backbone})")
    ensure_embeddings(PROJECT, round_config(options, options.first_round, 1, 0), settings)
    engine.dispose()
    return Workspace(settings, oracle_from(data.root), len(data.frames))


def task_value(result, task: str, videos: int) -> float:
    """The benchmark's metric of a round: VSS mIoU, or VOS J&F averaged over all videos (0 without picks)."""
    if task == "vss":
        return float(result.metrics.get("mIoU", float("nan")))
    return sum(v["scores"]["J&F"] for v in result.propagation if v["scores"]) / videos


def simulate(space: Workspace, strategy: str, budget: int, seed: int, options: ALOptions
             ) -> tuple[list[tuple[str, int]], float, list[str]]:
    """(picked (video, frame index), metric on the unpicked frames, how the picks were made): the loop's rounds on a
    fresh copy of the scratch project."""
    from segloop.platform.services.finetuning import load_project
    from segloop.platform.services.loop import run_round

    notes: list[str] = []
    with space.fresh_copy(f"{strategy}-{budget}-{seed}") as (settings, out_root):
        for number, (name, size) in enumerate(round_plan(strategy, budget, options), 1):
            signal = SIGNALS[options.task] if number > 1 else None
            config = round_config(options, name, size, seed, signal, out_root)
            result = run_round(PROJECT, config, space.oracle, settings=settings)
            notes.append(f"round {number}: {size} by {name}" + (f" on the round-{number - 1} model" if signal else "")
                         if strategy in MODEL_BASED else f"{size} by {name}")
        picked = load_project(PROJECT, settings).labeled()
    return picked, task_value(result, options.task, space.videos), notes


def ceiling(space: Workspace, options: ALOptions, folds: int, seed: int) -> float:
    """Mean held-out metric of k-fold cross-validation over all frames (label k-1 folds, train and score)."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import footage, projects
    from segloop.platform.services.loop import RoundResult, evaluate_labels
    from segloop.platform.services.oracle import label_frames

    with session_scope(get_engine(space.settings)) as session:
        frame_ids = [f.id for f in footage.project_frames(session, projects.get_project(session, PROJECT).id)]
    order = np.random.default_rng(seed).permutation(len(frame_ids))
    values = []
    for fold in range(folds):
        held = set(order[fold::folds].tolist())
        train = [frame_ids[row] for row in range(len(frame_ids)) if row not in held]
        with space.fresh_copy(f"ceiling-{fold}") as (settings, out_root):
            label_frames(train, space.oracle, settings)
            config = round_config(options, options.first_round, len(train), seed, out_root=out_root)
            result = evaluate_labels(PROJECT, 1, config, space.oracle, RoundResult(1, 0, train, len(train)),
                                     settings=settings)
        values.append(task_value(result, options.task, space.videos))
    return float(np.mean(values))


@contextmanager
def _work_folder(work_dir: Path | None) -> Iterator[Path]:
    """The given work folder (kept: its frames, embeddings and feature cache serve the next run) or a temporary one."""
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="segloop-al-") as folder:
        yield Path(folder)


def default_work_dir(root: str | Path, data_dir: Path) -> Path:
    """$SEGLOOP_DATA_DIR/cache/active-learning/<hash of the root>: one scratch project per benchmarked root."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return data_dir / "cache" / "active-learning" / digest


def run_benchmark(root: str | Path, options: ALOptions, work_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> dict:
    """The benchmark's JSON document."""
    from segloop.selectors.registry import get_strategy
    from segloop.selectors.types import SelectorError

    if options.task not in ("vss", "vos"):
        raise BenchError(f"--task: {options.task!r} is not vss or vos")
    for option, names in (("--strategies", options.strategies), ("--first-round", [options.first_round])):
        for name in names:
            try:
                get_strategy(name)
            except SelectorError as exc:
                raise BenchError(f"{option}: {exc}") from None
    data = load_davis_root(root)
    budgets = [parse_budget(b, data.total) for b in options.budgets]
    if options.ceiling_folds == 1 or options.ceiling_folds > data.total:
        raise BenchError(f"--ceiling-folds: {options.ceiling_folds} folds of {data.total} frames cannot each hold out "
                         f"frames and train on the rest; give 2..{data.total} (0 skips the ceiling)")
    say = progress or (lambda message: None)
    metric = "mIoU" if options.task == "vss" else "J&F"
    results = []
    with _work_folder(work_dir) as work:
        space = prepare_workspace(data, options, work, say)
        for label, budget in budgets:
            for strategy in options.strategies:
                for seed in range(options.seeds):
                    picked, value, notes = simulate(space, strategy, budget, seed, options)
                    results.append({"strategy": strategy, "budget": label, "seed": seed,
                                    "labeled_frames": len(picked), "value": value, "how": "; ".join(notes),
                                    "picked": [list(key) for key in picked]})
                    say(f"{strategy} {label} seed {seed}: {metric} {value:.4f} ({len(picked)} frames)")
        top = None
        if options.ceiling_folds:
            say(f"ceiling: {options.ceiling_folds}-fold cross-validation over all frames")
            top = ceiling(space, options, options.ceiling_folds, 0)
    return {"task": options.task, "metric": metric, "ceiling": top, "results": results,
            "root": str(Path(root).resolve()), "frames": data.total,
            "ceiling_protocol": (f"{options.ceiling_folds}-fold cross-validation over all frames"
                                 if options.ceiling_folds else "skipped (--ceiling-folds 0)"),
            "model_based_protocol": f"budget spent over {max(2, options.rounds)} rounds: round 1 by "
                                    f"{options.first_round}, later rounds by the strategy on the previous model's "
                                    "uncertainty",
            "options": asdict(options)}


def summarise(document: dict) -> list[dict]:
    """Mean and spread (std, min, max) over seeds per strategy and budget."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in document["results"]:
        groups.setdefault((row["strategy"], row["budget"]), []).append(row)
    out = []
    for (strategy, budget), rows in groups.items():
        values = np.array([r["value"] for r in rows])
        out.append({"strategy": strategy, "budget": budget, "mean": float(values.mean()),
                    "std": float(values.std()), "min": float(values.min()), "max": float(values.max()),
                    "seeds": len(rows), "labeled_frames": rows[0]["labeled_frames"]})
    return out


def plot(document: dict, path: Path) -> Path:
    """Metric vs budget per strategy (mean ± std over seeds) with the ceiling, as a PNG (atomic)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segloop.platform.core.storage import atomic_write_bytes

    rows = summarise(document)
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = {r["budget"]: r for r in rows if r["strategy"] == strategy}
        xs = [r["labeled_frames"] for b in budgets for r in [mine.get(b)] if r]
        ys = [r["mean"] for b in budgets for r in [mine.get(b)] if r]
        errs = [r["std"] for b in budgets for r in [mine.get(b)] if r]
        axis.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=strategy)
    if document.get("ceiling") is not None:
        axis.axhline(document["ceiling"], color="black", linestyle="--", label="full supervision")
    axis.set_xscale("log")
    ticks = {r["labeled_frames"]: r["budget"] for r in rows}
    axis.set_xticks(sorted(ticks), [f"{k}\n({ticks[k]})" for k in sorted(ticks)])
    axis.minorticks_off()
    axis.set_xlabel("labeled frames (budget)")
    axis.set_ylabel(document["metric"] + " on unlabeled frames")
    axis.set_title(f"active learning, {document['task'].upper()} ({document.get('frames', '?')} frames)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


@click.command(name="active-learning")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--task", type=click.Choice(["vss", "vos"]), default="vss", show_default=True)
@click.option("--strategies", default=DEFAULT_STRATEGIES, show_default=True)
@click.option("--budgets", default="1%,2%,5%,10%", show_default=True,
              help="Fractions of all frames of the root (or absolute counts).")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Rounds for model-based strategies (round 1 by --first-round).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Pretrained backbone weights (e.g. teacher_backbone.pth); default: random init.")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=DEFAULT_BACKBONE, show_default=True)
@click.option("--short-side", type=click.IntRange(min=16, max=MAX_SIDE), default=192, show_default=True)
@click.option("--head", type=click.Choice(["linear", "multiscale"]), default="multiscale", show_default=True)
@click.option("--min-steps", type=click.IntRange(min=1), default=200, show_default=True,
              help="Head training steps at least (more with many labeled frames: 30 epochs).")
@click.option("--first-round", default="kcenter", show_default=True)
@click.option("--ceiling-folds", type=click.IntRange(min=0), default=5, show_default=True,
              help="k of the k-fold full-supervision ceiling (0: skip).")
@click.option("--json", "json_out", type=OUT_FILE, default=None,
              help="Default: $SEGLOOP_DATA_DIR/bench/active-learning.json")
@click.option("--plot", "plot_out", type=OUT_FILE, default=None, help="PNG of the curves.")
def command(root: Path, task: str, strategies: str, budgets: str, rounds: int, seeds: int, checkpoint: Path | None,
            backbone: str, short_side: int, head: str, min_steps: int, first_round: str, ceiling_folds: int,
            json_out: Path | None, plot_out: Path | None) -> None:
    """Simulate labeling ROOT's frames with each strategy and budget; score the model on the unpicked frames."""
    from segloop.platform.bench.common import comma_items, default_json_path, machine_info
    from segloop.platform.core.console import console, err_console, print_table
    from segloop.platform.core.errors import friendly_errors
    from segloop.platform.core.settings import load_settings
    from segloop.platform.core.storage import write_json
    from segloop.pretrain.backbones import backbone_for

    @friendly_errors
    def run() -> None:
        options = ALOptions(task=task, strategies=comma_items("--strategies", strategies),
                            budgets=comma_items("--budgets", budgets), rounds=rounds,
                            seeds=seeds, checkpoint=str(checkpoint) if checkpoint else None,
                            backbone=backbone_for(checkpoint, backbone),
                            short_side=short_side, head=head, min_steps=min_steps, first_round=first_round,
                            ceiling_folds=ceiling_folds)
        work = default_work_dir(root, load_settings().data_dir)
        document = run_benchmark(root, options, work, progress=lambda m: err_console.print(m))
        document["machine"] = machine_info()
        rows = summarise(document)
        print_table(f"active learning ({task}, {document['metric']} on unpicked frames; "
                    f"ceiling {document['ceiling'] if document['ceiling'] is None else round(document['ceiling'], 4)})",
                    ["strategy", "budget", "frames", "mean", "std", "min", "max"],
                    [(r["strategy"], r["budget"], r["labeled_frames"], f"{r['mean']:.4f}", f"{r['std']:.4f}",
                      f"{r['min']:.4f}", f"{r['max']:.4f}") for r in rows])
        path = json_out or default_json_path("active-learning")
        write_json(path, document)
        console.print(f"wrote {path}")
        if plot_out:
            console.print(f"wrote {plot(document, plot_out)}")

    run()
