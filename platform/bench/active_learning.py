"""`segloop bench active-learning ROOT`: which frames to label, by strategy and budget, for a VSS or VOS model.

On a DAVIS-layout root with full ground truth the benchmark plays the annotator: a strategy picks
frames (budget = a fraction of all frames of the root), only those frames' ground truth is read, a
model is trained on them and scored on every frame that was NOT picked. VSS: background vs object
(every non-zero label is the object), the head of `segloop finetune vss` on cached features of the
given backbone, metric mIoU. VOS: each video's picked frames are propagated to the others
(per-video label propagation with the same backbone), metric J&F over the unpicked frames.

Model-based strategies (uncertainty, hybrid) need predictions: the budget is spent over `rounds`
rounds, the first by `first_round` (kcenter), each later one by the strategy using the per-frame
uncertainty (VSS: mean pixel entropy of the current model; VOS: 1 - propagation confidence) of the
model trained on everything labeled so far. Other strategies spend the whole budget in one run.
The full-supervision ceiling is a k-fold cross-validation over all frames (train on k-1 folds,
score the held-out fold).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np

MODEL_BASED = ("uncertainty", "hybrid")
DEFAULT_STRATEGIES = "random,uniform,kcenter,typicality,uncertainty,hybrid"


class BenchError(ValueError):
    """A root, budget or option the benchmark cannot use; the message names it."""


@dataclass
class DavisRoot:
    """Frame files and lazily read ground truth of a DAVIS-layout root."""

    root: Path
    frames: dict[str, list[Path]]
    masks: dict[str, list[Path]]

    @property
    def total(self) -> int:
        """All frames of the root."""
        return sum(len(v) for v in self.frames.values())

    def ground_truth(self, binary: bool) -> dict[str, list[np.ndarray]]:
        """Label maps per video (binary: every object = 1)."""
        from segloop.platform.core.masks import read_mask

        out = {}
        for name, paths in self.masks.items():
            maps = [read_mask(p) for p in paths]
            out[name] = [np.where(m == 255, 255, m > 0).astype(np.uint8) if binary else m for m in maps]
        return out


def load_davis_root(root: str | Path) -> DavisRoot:
    """Sequences of `root/JPEGImages/480p/<seq>/*.jpg` with one mask each in `root/Annotations/480p/<seq>/`."""
    root = Path(root)
    images = root / "JPEGImages" / "480p"
    annotations = root / "Annotations" / "480p"
    if not images.is_dir() or not annotations.is_dir():
        raise BenchError(f"{root}: not a DAVIS-layout root (needs JPEGImages/480p and Annotations/480p)")
    frames, masks = {}, {}
    for seq in sorted(p.name for p in images.iterdir() if p.is_dir()):
        jpgs = sorted((images / seq).glob("*.jpg"))
        if not jpgs:
            continue
        pngs = [annotations / seq / f"{p.stem}.png" for p in jpgs]
        missing = [p for p in pngs if not p.is_file()]
        if missing:
            raise BenchError(f"{missing[0]}: ground truth missing (the benchmark needs every frame's mask)")
        frames[seq], masks[seq] = jpgs, pngs
    if not frames:
        raise BenchError(f"{images}: no sequence with frames")
    return DavisRoot(root, frames, masks)


def parse_budget(text: str, total: int) -> tuple[str, int]:
    """('2%', frames) from '2%' (of all frames, at least 1) or an absolute count '12'."""
    text = text.strip()
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100.0
            if not 0 < fraction <= 1:
                raise ValueError
            return text, max(1, int(round(fraction * total)))
        count = int(text)
        if count < 1:
            raise ValueError
        return text, min(count, total)
    except ValueError:
        raise BenchError(f"--budgets: {text!r} is not a percentage in (0, 100] or a positive frame count") from None


@dataclass
class Index:
    """Row layout of all frames of the root: video name and frame index per row."""

    videos: list[str]
    video_of: np.ndarray
    frame_of: np.ndarray

    @classmethod
    def of(cls, counts: dict[str, int]) -> Index:
        names = list(counts)
        video_of = np.concatenate([np.full(counts[n], i) for i, n in enumerate(names)])
        frame_of = np.concatenate([np.arange(counts[n]) for n in names])
        return cls(names, video_of.astype(np.int64), frame_of.astype(np.int64))

    def key(self, row: int) -> tuple[str, int]:
        """(video, frame index) of a row."""
        return self.videos[int(self.video_of[row])], int(self.frame_of[row])


def candidate_pool(index: Index, embeddings: np.ndarray, labeled: np.ndarray, uncertainty: dict | None = None):
    """A CandidatePool of every frame of the root (row = frame id)."""
    from segloop.selectors.types import CandidatePool

    return CandidatePool(embeddings=embeddings, frame_ids=np.arange(len(index.video_of)), video_ids=index.video_of,
                         frame_indices=index.frame_of, labeled=labeled, uncertainty=uncertainty or {})


def select_rows(strategy: str, pool, budget: int, seed: int) -> list[int]:
    """Rows picked by a strategy (seed passed to the strategies that take one)."""
    from segloop.selectors.constraints import Constraints
    from segloop.selectors.registry import get_strategy, run_strategy

    params = {"seed": seed} if "seed" in get_strategy(strategy).params else {}
    if "device" in get_strategy(strategy).params:
        params["device"] = "numpy" if strategy != "hybrid" else "auto"
    picks = run_strategy(strategy, pool, Constraints(budget=budget), **params)
    return [int(p.frame_id) for p in picks]


@dataclass
class Task:
    """One benchmark task: trains on labeled rows, predicts every frame, scores the unpicked ones."""

    name: str
    metric: str
    fit: Callable[[list[int], int], object]
    score: Callable[[object, set[int]], float]
    uncertainty: Callable[[object], np.ndarray]


def vss_task(index: Index, features: dict, gt: dict[str, list[np.ndarray]], spec, config) -> Task:
    """Background-vs-object VSS with the finetune head; mIoU over the unpicked frames."""
    from segloop.platform.evaluation import metrics as evaluation
    from segloop.platform.vss import head as vss

    def fit(rows: list[int], seed: int):
        samples = [vss.Sample(*index.key(r), gt[index.key(r)[0]][index.key(r)[1]]) for r in rows]
        trained = vss.train_vss(samples, features, 2, spec, _with_seed(config, seed))
        return {name: vss.predict_video(trained, features[name]) for name in index.videos}

    def score(probs: dict, picked: set[int]) -> float:
        confusion = np.zeros((2, 2), dtype=np.int64)
        for row in range(len(index.video_of)):
            if row in picked:
                continue
            name, frame = index.key(row)
            pred = vss.class_map(probs[name][frame], features[name].size)
            confusion += evaluation.confusion_matrix(pred, gt[name][frame], 2)
        return evaluation.mean_iou(confusion)

    def uncertainty(probs: dict) -> np.ndarray:
        return np.concatenate([vss.uncertainty_signals(probs[name])["vss_entropy_mean"] for name in index.videos])

    return Task("vss", "mIoU", fit, score, uncertainty)


def vos_task(index: Index, frames: dict[str, list[Path]], gt: dict[str, list[np.ndarray]], featurizer,
             prop_config) -> Task:
    """Per-video label propagation from the picked frames; J&F (all objects, DAVIS measures) over the unpicked frames."""
    from segloop.platform.evaluation import metrics as evaluation
    from segloop.platform.vos import propagation as vos
    from segloop.platform.vos.frames import CachedFeaturizer, LoadedFrames

    featurizer = CachedFeaturizer(featurizer)
    loaded = {name: LoadedFrames.of(paths, name) for name, paths in frames.items()}

    def fit(rows: list[int], seed: int):
        by_video: dict[str, list[int]] = {}
        for row in rows:
            name, frame = index.key(row)
            by_video.setdefault(name, []).append(frame)
        out = {}
        for name in index.videos:
            if name not in by_video:
                out[name] = None
                continue
            keys = {i: gt[name][i] for i in by_video[name]}
            results = list(vos.iter_propagate(loaded[name], keys, featurizer, prop_config))
            out[name] = ([r.mask for r in results],
                         np.array([1.0 - (r.confidence.get("fg_mean_max_prob") or r.confidence["mean_max_prob"])
                                   for r in results]))
        return out

    def score(model: dict, picked: set[int]) -> float:
        report = evaluation.VOSReport()
        for v, name in enumerate(index.videos):
            count = len(gt[name])
            chosen = [i for i in range(count) if int(np.flatnonzero(index.video_of == v)[i]) not in picked]
            masks = model[name][0] if model[name] is not None else [np.zeros_like(g) for g in gt[name]]
            if chosen:
                report.objects.extend(evaluation.evaluate_sequence(name, masks, gt[name], frames=chosen,
                                                                   skip_first_last=False))
        return report.summary()["J&F"]

    def uncertainty(model: dict) -> np.ndarray:
        return np.concatenate([model[name][1] if model[name] is not None else np.ones(len(gt[name]))
                               for name in index.videos])

    return Task("vos", "J&F", fit, score, uncertainty)


def _with_seed(config, seed: int):
    """A copy of a frozen config with another seed."""
    from dataclasses import replace

    return replace(config, seed=seed)


def run_strategy_budget(task: Task, strategy: str, budget: int, seed: int, index: Index, embeddings: np.ndarray,
                        rounds: int, first_round: str) -> tuple[list[int], float, list[str]]:
    """(picked rows, metric on the unpicked frames, how the picks were made) for one strategy, budget and seed."""
    total = len(index.video_of)
    labeled = np.zeros(total, dtype=bool)
    notes: list[str] = []
    if strategy in MODEL_BASED:
        rounds = max(2, rounds)
        sizes = [budget // rounds + (1 if r < budget % rounds else 0) for r in range(rounds)]
        sizes = [s for s in sizes if s > 0]
        model = None
        for number, size in enumerate(sizes):
            if model is None:
                rows = select_rows(first_round, candidate_pool(index, embeddings, labeled), size, seed)
                notes.append(f"round {number + 1}: {size} by {first_round}")
            else:
                signal = {"u": task.uncertainty(model)}
                rows = select_rows(strategy, candidate_pool(index, embeddings, labeled, signal), size, seed)
                notes.append(f"round {number + 1}: {size} by {strategy} on the round-{number} model")
            labeled[rows] = True
            if number < len(sizes) - 1:
                model = task.fit(np.flatnonzero(labeled).tolist(), seed)
    else:
        labeled[select_rows(strategy, candidate_pool(index, embeddings, labeled), budget, seed)] = True
        notes.append(f"{budget} by {strategy}")
    picked = np.flatnonzero(labeled).tolist()
    model = task.fit(picked, seed)
    return picked, task.score(model, set(picked)), notes


def ceiling(task: Task, total: int, folds: int, seed: int) -> float:
    """Mean held-out metric of k-fold cross-validation over all frames (train on k-1 folds)."""
    order = np.random.default_rng(seed).permutation(total)
    values = []
    for fold in range(folds):
        held = set(order[fold::folds].tolist())
        train = [r for r in range(total) if r not in held]
        values.append(task.score(task.fit(train, seed), set(train)))
    return float(np.mean(values))


@dataclass
class ALOptions:
    """Benchmark settings (defaults: minutes on a 2-core CPU for the 4-sequence sample)."""

    task: str = "vss"
    strategies: list[str] = field(default_factory=lambda: DEFAULT_STRATEGIES.split(","))
    budgets: list[str] = field(default_factory=lambda: ["1%", "2%", "5%", "10%"])
    rounds: int = 2
    seeds: int = 3
    checkpoint: str | None = None
    backbone: str = "vit_tiny_patch16_224"
    short_side: int = 192
    head: str = "multiscale"
    min_steps: int = 200
    vector: str = "cls"
    first_round: str = "kcenter"
    ceiling_folds: int = 5
    prop_short_side: int = 240
    prop_radius: int = 6


def run_benchmark(root: str | Path, options: ALOptions, cache_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> dict:
    """The benchmark's JSON document."""
    from segloop.platform.features.backbone import FeatureSpec, video_features
    from segloop.platform.vss.head import VSSConfig
    from segloop.selectors.registry import get_strategy

    if options.task not in ("vss", "vos"):
        raise BenchError(f"--task: {options.task!r} is not vss or vos")
    for name in options.strategies:
        get_strategy(name)
    data = load_davis_root(root)
    budgets = [parse_budget(b, data.total) for b in options.budgets]
    spec = FeatureSpec(backbone=options.backbone, weights=options.checkpoint, short_side=options.short_side)
    say = progress or (lambda message: None)
    say(f"features of {data.total} frames ({options.backbone}, short side {options.short_side})")
    features = video_features(data.frames, spec, cache_dir)
    index = Index.of({name: len(paths) for name, paths in data.frames.items()})
    embeddings = _embeddings(features, index, options.vector)
    gt = data.ground_truth(binary=options.task == "vss")
    if options.task == "vss":
        task = vss_task(index, features, gt, spec, VSSConfig(head=options.head, min_steps=options.min_steps))
    else:
        from segloop.platform.vos import propagation as vos

        prop_config = vos.PropagationConfig(short_side=options.prop_short_side, radius=options.prop_radius)
        featurizer = vos.make_featurizer("backbone", options.backbone, options.checkpoint, prop_config)
        task = vos_task(index, data.frames, gt, featurizer, prop_config)
    results = []
    for label, budget in budgets:
        for strategy in options.strategies:
            for seed in range(options.seeds):
                picked, value, notes = run_strategy_budget(task, strategy, budget, seed, index, embeddings,
                                                           options.rounds, options.first_round)
                results.append({"strategy": strategy, "budget": label, "seed": seed, "labeled_frames": len(picked),
                                "value": value, "how": "; ".join(notes)})
                say(f"{strategy} {label} seed {seed}: {task.metric} {value:.4f} ({len(picked)} frames)")
    say(f"ceiling: {options.ceiling_folds}-fold cross-validation over all frames")
    top = ceiling(task, data.total, options.ceiling_folds, 0) if options.ceiling_folds >= 2 else None
    return {"task": options.task, "metric": task.metric, "ceiling": top, "results": results,
            "root": str(Path(root).resolve()), "frames": data.total,
            "ceiling_protocol": f"{options.ceiling_folds}-fold cross-validation over all frames",
            "model_based_protocol": f"budget spent over {max(2, options.rounds)} rounds: round 1 by "
                                    f"{options.first_round}, later rounds by the strategy on the previous model's "
                                    "uncertainty",
            "options": asdict(options)}


def _embeddings(features: dict, index: Index, vector: str) -> np.ndarray:
    """Per-frame embeddings in row order: CLS tokens or mean last-layer patch tokens, L2-normalised."""
    if vector not in ("cls", "patch_mean"):
        raise BenchError(f"--vector: {vector!r} is not cls or patch_mean")
    parts = []
    for name in index.videos:
        f = features[name]
        parts.append(f.cls if vector == "cls" else f.feats[:, -1].astype(np.float32).mean(axis=(2, 3)))
    vectors = np.concatenate(parts).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


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


def _split(text: str) -> list[str]:
    """Comma-separated items."""
    return [t.strip() for t in text.split(",") if t.strip()]


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
@click.option("--backbone", default="vit_tiny_patch16_224", show_default=True)
@click.option("--short-side", type=click.IntRange(min=16), default=192, show_default=True)
@click.option("--head", type=click.Choice(["linear", "multiscale"]), default="multiscale", show_default=True)
@click.option("--min-steps", type=click.IntRange(min=1), default=200, show_default=True,
              help="Head training steps at least (more with many labeled frames: 30 epochs).")
@click.option("--first-round", default="kcenter", show_default=True)
@click.option("--ceiling-folds", type=click.IntRange(min=0), default=5, show_default=True,
              help="k of the k-fold full-supervision ceiling (0: skip).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Default: $SEGLOOP_DATA_DIR/bench/active-learning.json")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), default=None, help="PNG of the curves.")
def command(root: Path, task: str, strategies: str, budgets: str, rounds: int, seeds: int, checkpoint: Path | None,
            backbone: str, short_side: int, head: str, min_steps: int, first_round: str, ceiling_folds: int, json_out: Path | None,
            plot_out: Path | None) -> None:
    """Simulate labeling ROOT's frames with each strategy and budget; score the model on the unpicked frames."""
    from segloop.platform.bench.common import default_json_path, machine_info
    from segloop.platform.core.console import console, err_console, print_table
    from segloop.platform.core.errors import friendly_errors
    from segloop.platform.core.settings import load_settings
    from segloop.platform.core.storage import write_json

    @friendly_errors
    def run() -> None:
        options = ALOptions(task=task, strategies=_split(strategies), budgets=_split(budgets), rounds=rounds,
                            seeds=seeds, checkpoint=str(checkpoint) if checkpoint else None, backbone=backbone,
                            short_side=short_side, head=head, min_steps=min_steps, first_round=first_round,
                            ceiling_folds=ceiling_folds)
        cache = load_settings().data_dir / "cache" / "features"
        document = run_benchmark(root, options, cache, progress=lambda m: err_console.print(m))
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
