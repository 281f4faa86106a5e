"""`segloop bench keyframes ROOT`: which K frames of each video to annotate so that propagation works best.

For every video of a DAVIS-layout root, strategy and K: the strategy picks K frames, their ground
truth is given, label propagation (`segloop.platform.vos.propagation`, the backbone's patch features) fills in
the other frames, and J&F is computed per the DAVIS protocol (first and last frame not scored; the
annotated frames count with their given masks). Strategies: `first` (frames 0..K-1: the classic
first-frame setting for K = 1), `uniform` (i·T/K), and the `keyframes` selector (an even cover of
the video's path of appearance change and time, on the frames' CLS embeddings). Each video's frames are
embedded once and the features reused across strategies and budgets. With `--memory`, the memory VOS model
(`segloop finetune vos`) is trained per strategy and K on the chosen frames' masks, on the same frozen encoder,
and its masks are scored too: the benchmark then measures placement with the fine-tuned propagator as well.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import click
import numpy as np

from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.console import OUT_FILE
from segloop.platform.core.image import MAX_SIDE
from segloop.platform.vos.frames import CachedFeaturizer, LoadedFrames

STRATEGIES = ("first", "uniform", "keyframes")


def pick_keyframes(strategy: str, count: int, budget: int, embeddings: np.ndarray | None = None) -> list[int]:
    """K frame indices of a `count`-frame video by strategy (first, uniform, keyframes)."""
    from segloop.platform.vos import propagation as vos

    budget = min(budget, count)
    if strategy == "first":
        return list(range(budget))
    if strategy == "uniform":
        return vos.parse_keyframes(f"uniform:{budget}", count)
    if strategy == "keyframes":
        if embeddings is None:
            raise ValueError("keyframes strategy needs per-frame embeddings")
        from segloop.selectors.constraints import Constraints
        from segloop.selectors.registry import run_strategy
        from segloop.selectors.types import CandidatePool

        pool = CandidatePool(embeddings=embeddings, frame_ids=np.arange(count), video_ids=np.zeros(count, np.int64),
                             frame_indices=np.arange(count))
        return sorted(int(p.frame_id) for p in run_strategy("keyframes", pool, Constraints(budget=budget)))
    raise ValueError(f"--strategies: unknown keyframe strategy {strategy!r} (one of {', '.join(STRATEGIES)})")


def score_masks(name: str, masks: Sequence[np.ndarray], gt: list[np.ndarray]) -> float:
    """J&F of a video's masks per the DAVIS protocol (first and last frame not scored)."""
    from segloop.platform.evaluation import metrics as evaluation

    report = evaluation.VOSReport(evaluation.evaluate_sequence(name, masks, gt, skip_first_last=True))
    return report.sequence_scores(name)["J&F"]


def run_benchmark(root: str | Path, strategies: Sequence[str], budgets: Sequence[int], backbone: str,
                  checkpoint: str | None, short_side: int = 240, radius: int = 6, embed_short_side: int = 112,
                  refine: bool = False, refine_steps: int = 300, refine_short_side: int = 192,
                  memory: bool = False, memory_steps: int = 600,
                  cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """The benchmark's JSON document: J&F per strategy and K, overall and per sequence.

    With `refine`, a refinement decoder (`segloop.platform.vos.refiner`) is trained per strategy
    and K on the annotated frames of all videos, and the refined masks are scored too ("J&F_refined"); with
    `memory`, the memory VOS model likewise ("J&F_memory").
    """
    from segloop.platform.bench.active_learning import load_davis_root
    from segloop.platform.core.masks import read_mask
    from segloop.platform.features.backbone import FeatureSpec, extract_video, load_backbone, video_features
    from segloop.platform.vos import propagation as vos
    from segloop.platform.vos import refiner as refinement
    from segloop.pretrain.backbones import backbone_for

    backbone = backbone_for(checkpoint, backbone)
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise ValueError(f"--strategies: unknown keyframe strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
    data = load_davis_root(root)
    config = vos.PropagationConfig(short_side=short_side, radius=radius)
    featurizer = CachedFeaturizer(vos.make_featurizer("backbone", backbone, checkpoint, config))
    spec = FeatureSpec(backbone=backbone, weights=checkpoint, short_side=embed_short_side, layers=1)
    embedder = load_backbone(spec)
    say = progress or (lambda message: None)
    videos = {}
    for name, paths in data.frames.items():
        cls = extract_video(name, paths, spec, embedder).cls
        videos[name] = (LoadedFrames.of(paths, name), [read_mask(p) for p in data.masks[name]],
                        cls / np.maximum(np.linalg.norm(cls, axis=1, keepdims=True), 1e-12))
    refine_spec = FeatureSpec(backbone=backbone, weights=checkpoint, short_side=refine_short_side)
    dense = video_features(data.frames, refine_spec, cache_dir) if refine else {}
    train_memory = _memory_trainer(checkpoint, short_side, memory_steps, say) if memory else None
    results = []
    for budget in budgets:
        for strategy in strategies:
            picks = {name: pick_keyframes(strategy, len(frames), budget, cls)
                     for name, (frames, _, cls) in videos.items()}
            trained = None
            labeled = {name: {k: videos[name][1][k] for k in chosen} for name, chosen in picks.items()}
            if refine:
                trained = refinement.train_refiner(refinement.object_samples(labeled), dense, refine_spec,
                                                   refinement.RefineConfig(steps=refine_steps))
            plain, refined = {}, {}
            for name, (frames, gt, _) in videos.items():
                keys = {k: gt[k] for k in picks[name]}
                if trained is None:
                    masks = [r.mask for r in vos.iter_propagate(frames, keys, featurizer, config)]
                else:
                    pairs = [(m, r) for _, m, r in refinement.iter_refined(frames, keys, featurizer, trained,
                                                                              dense[name], config)]
                    masks = [m for m, _ in pairs]
                    refined[name] = score_masks(name, [r for _, r in pairs], gt)
                plain[name] = score_masks(name, masks, gt)
                say(f"{name} K={budget} {strategy} {picks[name]}: J&F {plain[name]:.4f}"
                    + (f", refined {refined[name]:.4f}" if refine else ""))
            row = {"strategy": strategy, "budget": budget, "J&F": float(np.mean(list(plain.values()))),
                   "sequences": plain, "keyframes": picks}
            if refine:
                row["J&F_refined"] = float(np.mean(list(refined.values())))
                row["sequences_refined"] = refined
            if train_memory is not None:
                propagator = train_memory({name: frames for name, (frames, _, _) in videos.items()}, labeled)
                row["sequences_memory"] = {
                    name: score_masks(name, [r.mask for r in vos.iter_propagate(frames, labeled[name], propagator)], gt)
                    for name, (frames, gt, _) in videos.items()}
                row["J&F_memory"] = float(np.mean(list(row["sequences_memory"].values())))
                say(f"K={budget} {strategy}: memory VOS model J&F {row['J&F_memory']:.4f}")
            results.append(row)
    return {"benchmark": "keyframes", "root": str(Path(root).resolve()), "backbone": backbone,
            "checkpoint": checkpoint, "propagation": config.as_dict(), "results": results}


def _memory_trainer(checkpoint: str | None, short_side: int, steps: int, say: Callable[[str], None]):
    """A function training the memory VOS model on {video: {frame: mask}} labels (the checkpoint's frozen dense
    encoder, else Lab cells) and returning it as a propagator at `short_side`."""
    from segloop.platform.vos import memory_train
    from segloop.platform.vos.memory import MemoryPropagationConfig, MemoryPropagator

    encoder = memory_train.frame_encoder(checkpoint)

    def train(frames: dict, labels: dict) -> MemoryPropagator:
        trained = memory_train.train_memory_model(frames, labels, encoder, memory_train.MemoryTrainConfig(steps=steps))
        say(f"memory VOS model: {len(trained.losses)} steps in {trained.seconds:.0f} s")
        return MemoryPropagator(trained.model, MemoryPropagationConfig(short_side=short_side))

    return train


@click.command(name="keyframes")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--budgets", default="1,2,3,5", show_default=True, help="Comma-separated K (frames per video).")
@click.option("--strategies", default="first,uniform,keyframes", show_default=True)
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=DEFAULT_BACKBONE, show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="A `segloop pretrain --out` folder (its dense encoder propagates, its ViT embeds for the "
                   "keyframes strategy) or local backbone weights.")
@click.option("--short-side", type=click.IntRange(min=16, max=MAX_SIDE), default=240, show_default=True)
@click.option("--radius", type=click.IntRange(min=0), default=6, show_default=True)
@click.option("--refine/--no-refine", default=False, show_default=True,
              help="Also train the VOS refinement decoder on the annotated frames and score the refined masks.")
@click.option("--refine-steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--memory/--no-memory", default=False, show_default=True,
              help="Also train the memory VOS model (`finetune vos`) on each strategy's annotated frames and score "
                   "its masks.")
@click.option("--memory-steps", type=click.IntRange(min=1), default=600, show_default=True)
@click.option("--json", "json_out", type=OUT_FILE, default=None,
              help="Default: $SEGLOOP_DATA_DIR/bench/keyframes.json")
def command(root: Path, budgets: str, strategies: str, backbone: str, checkpoint: Path | None, short_side: int,
            radius: int, refine: bool, refine_steps: int, memory: bool, memory_steps: int,
            json_out: Path | None) -> None:
    """J&F of propagation from K annotated frames per video, by how the K frames are chosen."""
    from segloop.platform.bench.common import comma_ints, comma_items, default_json_path, machine_info
    from segloop.platform.core.console import console, err_console, print_table
    from segloop.platform.core.errors import friendly_errors
    from segloop.platform.core.settings import load_settings
    from segloop.platform.core.storage import write_json

    @friendly_errors
    def run() -> None:
        ks, names = comma_ints("--budgets", budgets), comma_items("--strategies", strategies)
        document = run_benchmark(root, names, ks, backbone, str(checkpoint) if checkpoint else None, short_side,
                                 radius, refine=refine, refine_steps=refine_steps, memory=memory,
                                 memory_steps=memory_steps,
                                 cache_dir=load_settings().data_dir / "cache" / "features",
                                 progress=lambda m: err_console.print(m))
        document["machine"] = machine_info()
        sequences = list(document["results"][0]["sequences"])
        extra = [(key, title) for key, title, on in (("J&F_refined", "J&F refined", refine),
                                                    ("J&F_memory", "J&F memory model", memory)) if on]
        print_table("keyframes: J&F of propagated masks (DAVIS protocol)",
                    ["K", "strategy", "J&F", *(title for _, title in extra), *sequences],
                    [(r["budget"], r["strategy"], f"{r['J&F']:.4f}", *(f"{r[key]:.4f}" for key, _ in extra),
                      *(f"{r['sequences'][s]:.3f}" for s in sequences)) for r in document["results"]])
        path = json_out or default_json_path("keyframes")
        write_json(path, document)
        console.print(f"wrote {path}")

    run()
