"""`segloop bench vss ROOT`: video semantic segmentation with and without the temporal module.

Classes from the DAVIS masks: 0 background, 1 any object (255 void). Two protocols:
`frames` (a head trained on the `--keyframes` of every video, scored on all their other frames) and
`videos` (leave one video out: a head trained on the keyframes of the other videos, scored on every
frame of the held-out one). Per trained head, variants: `none` (the head alone), `average` (previous
fused probabilities carried through the correspondence, fixed 0.5 average) and `gate` (the learned
gate, `segloop.platform.vss.temporal`), optionally with other top-k / radius (`gate:topk=10,radius=3`).
Scores: mIoU, temporal flicker (fraction of pixels whose predicted class changes between consecutive
frames where the ground truth does not; lower is better) and the GT-blind temporal stability (mean
IoU of consecutive predictions).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.console import OUT_FILE
from segloop.platform.core.image import MAX_SIDE

PROTOCOLS = ("frames", "videos")
NONE = "none"


def parse_variant(text: str, base) -> tuple[str, object | None]:
    """(name, TemporalConfig or None) of 'none', 'average', 'gate' or 'gate:topk=10,radius=3'."""
    from segloop.platform.vss.temporal import FUSIONS

    fusion, _, options = text.strip().partition(":")
    if fusion == NONE:
        return NONE, None
    if fusion not in FUSIONS:
        raise ValueError(f"--variants: {text!r} is not none, average, gate or gate:topk=K,radius=R")
    values = {}
    for item in filter(None, (o.strip() for o in options.split(","))):
        key, _, value = item.partition("=")
        if key not in ("topk", "radius", "short_side", "steps"):
            raise ValueError(f"--variants: {text!r}: unknown setting {key!r} (topk, radius, short_side, steps)")
        values[key] = int(value)
    return text.strip(), replace(base, fusion=fusion, **values)


def class_maps(mask: np.ndarray) -> np.ndarray:
    """DAVIS object ids as VSS classes: 0 background, 1 object, 255 void."""
    return np.where(mask == 255, 255, mask > 0).astype(np.uint8)


def score(predictions: dict, truth: dict, frames: dict[str, list[int]]) -> dict[str, float]:
    """mIoU, temporal flicker and temporal stability of class maps on the scored frames."""
    from segloop.platform.evaluation import metrics as evaluation

    result = evaluation.evaluate_vss(predictions, truth, 2, frames=frames)
    return {"mIoU": result["mIoU"], "flicker": result["temporal_flicker"],
            "stability": result["temporal_stability"]}


def run_benchmark(root: str | Path, keyframes: str, checkpoint: str | None, backbone: str, variants: Sequence[str],
                  protocols: Sequence[str] = PROTOCOLS, short_side: int = 192, head_config=None, temporal_config=None,
                  cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """The benchmark's JSON document: per protocol and variant, mIoU / flicker / stability overall and per video."""
    from segloop.platform.bench.active_learning import load_davis_root
    from segloop.platform.core.masks import read_mask
    from segloop.platform.features.backbone import FeatureSpec, video_features
    from segloop.platform.vos import propagation as vos
    from segloop.platform.vos.frames import CachedFeaturizer, LoadedFrames
    from segloop.platform.vss import head as vss
    from segloop.platform.vss import temporal
    from segloop.pretrain.backbones import backbone_for

    say = progress or (lambda message: None)
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"--protocols: unknown protocol {protocol!r} (frames, videos)")
    head_config = head_config or vss.VSSConfig(device="cpu")
    base = temporal_config or temporal.TemporalConfig()
    parsed = [parse_variant(v, base) for v in variants]
    data = load_davis_root(root)
    weights, encoder = None, temporal.EncoderRef()
    if checkpoint:
        run_dir = Path(checkpoint)
        weights = str(run_dir / vos.TEACHER_FILE) if run_dir.is_dir() else str(run_dir)
        backbone = backbone_for(run_dir, backbone)
        encoder = temporal.EncoderRef(weights, backbone)
    spec = FeatureSpec(backbone=backbone, weights=weights, short_side=short_side)
    feats = video_features(data.frames, spec, cache_dir)
    frames = {name: LoadedFrames.of(paths, name) for name, paths in data.frames.items()}
    truth = {name: [class_maps(read_mask(p)) for p in masks] for name, masks in data.masks.items()}
    picks = {name: vos.parse_keyframes(keyframes, len(paths)) for name, paths in data.frames.items()}
    featurizers: dict[int, object] = {}

    def featurizer_for(config):
        """One caching featurizer per working size, shared by every variant and fold."""
        if config.short_side not in featurizers:
            featurizers[config.short_side] = CachedFeaturizer(encoder.featurizer(config))
        return featurizers[config.short_side]

    splits = []
    if "frames" in protocols:
        splits.append(("frames", list(data.frames), list(data.frames)))
    if "videos" in protocols:
        splits += [("videos", [n for n in data.frames if n != held], [held]) for held in data.frames]
    predicted: dict[tuple[str, str], dict[str, list[np.ndarray]]] = {}
    for protocol, train_videos, test_videos in splits:
        samples = [vss.Sample(name, i, truth[name][i]) for name in train_videos for i in picks[name]]
        trained = vss.train_vss(samples, feats, 2, spec, head_config)
        for name, config in parsed:
            model = None
            if config is not None and config.fusion == temporal.AVERAGE:
                model = temporal.TemporalModel(temporal.build_gate(2, config.hidden), 2, config, encoder, [])
            elif config is not None:
                model = temporal.train_temporal(samples, feats, frames, 2, spec, head_config, encoder, config,
                                                featurizer=featurizer_for(config))
            for video in test_videos:
                probs = vss.predict_video(trained, feats[video])
                if model is not None:
                    correspondence = temporal.Correspondence(featurizer_for(config), config)
                    probs = temporal.smooth_video(model, probs, frames[video], correspondence=correspondence)
                size = feats[video].size
                predicted.setdefault((protocol, name), {})[video] = [vss.class_map(p, size) for p in probs]
            say(f"{protocol} (test {', '.join(test_videos)}) {name}: done")
    results = []
    for (protocol, name), predictions in predicted.items():
        scored = {video: [i for i in range(len(truth[video])) if protocol == "videos" or i not in picks[video]]
                  for video in predictions}
        row = {"protocol": protocol, "variant": name, **score(predictions, {v: truth[v] for v in predictions}, scored),
               "sequences": {video: score({video: predictions[video]}, {video: truth[video]}, {video: scored[video]})
                             for video in predictions}}
        results.append(row)
    return {"benchmark": "vss", "root": str(Path(root).resolve()), "keyframes": keyframes, "checkpoint": checkpoint,
            "backbone": backbone, "short_side": short_side, "head": head_config.as_dict(),
            "temporal": base.as_dict(), "results": results}


@click.command(name="vss")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--keyframes", default="uniform:5", show_default=True,
              help="Labelled frames per video (first | uniform:K | indices); the others are scored.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="A `segloop pretrain --out` folder (its ViT embeds, its dense encoder carries); default: a "
                   "random-init backbone and raw-colour correspondence.")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=DEFAULT_BACKBONE, show_default=True)
@click.option("--variants", default="none,average,gate", show_default=True,
              help="Comma-separated: none, average, gate, or one with settings, e.g. gate:topk=10+radius=3.")
@click.option("--protocols", default="frames,videos", show_default=True)
@click.option("--short-side", type=click.IntRange(min=16, max=MAX_SIDE), default=192, show_default=True)
@click.option("--json", "json_out", type=OUT_FILE, default=None,
              help="Default: $SEGLOOP_DATA_DIR/bench/vss.json")
def command(root: Path, keyframes: str, checkpoint: Path | None, backbone: str, variants: str, protocols: str,
            short_side: int, json_out: Path | None) -> None:
    """mIoU and temporal flicker of VSS with and without the temporal module, on held-out frames and videos."""
    from segloop.platform.bench.common import comma_items, default_json_path, machine_info
    from segloop.platform.core.console import console, err_console, print_table
    from segloop.platform.core.errors import friendly_errors
    from segloop.platform.core.settings import load_settings
    from segloop.platform.core.storage import write_json

    @friendly_errors
    def run() -> None:
        names = [v.replace("+", ",") for v in comma_items("--variants", variants)]
        chosen = comma_items("--protocols", protocols)
        document = run_benchmark(root, keyframes, str(checkpoint) if checkpoint else None, backbone, names, chosen,
                                 short_side, cache_dir=load_settings().data_dir / "cache" / "features",
                                 progress=lambda m: err_console.print(m))
        document["machine"] = machine_info()
        for protocol in chosen:
            rows = [r for r in document["results"] if r["protocol"] == protocol]
            videos = list(rows[0]["sequences"]) if rows else []
            print_table(f"vss, held-out {protocol}: mIoU / flicker (lower is steadier) / stability",
                        ["variant", "mIoU", "flicker", "stability", *(f"{v} mIoU/flicker" for v in videos)],
                        [(r["variant"], f"{r['mIoU']:.4f}", _number(r["flicker"]), _number(r["stability"]),
                          *(f"{r['sequences'][v]['mIoU']:.3f}/{_number(r['sequences'][v]['flicker'], 3)}"
                            for v in videos)) for r in rows])
        path = json_out or default_json_path("vss")
        write_json(path, document)
        console.print(f"wrote {path}")

    run()


def _number(value: float | None, digits: int = 4) -> str:
    """A score, or '-' when undefined."""
    return "-" if value is None else f"{value:.{digits}f}"
