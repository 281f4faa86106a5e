"""Select page: embed a project if needed, pick a strategy with its parameters, a budget and constraints, run it
(inline for small pools, as a job otherwise), then review the ranked picks and accept them into the labeling queue."""
from __future__ import annotations

import math
from typing import Any

import streamlit as st

from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.services import artifacts, explore, library, selection
from segloop.platform.services.artifacts import EmbeddingSetInfo
from segloop.platform.services.checkpoints import PRETRAINED_KINDS
from segloop.platform.services.library import ProjectInfo
from segloop.platform.services.selection import StrategyInfo
from segloop.ui import resources
from segloop.ui.literal import literal

INLINE_POOL_MAX = 20_000
INLINE_EMBED_MAX_FRAMES = 2_000
REVIEW_PAGE = 24
REVIEW_COLUMNS = 6
DEVICES = ("auto", "cpu", "cuda")


def render() -> None:
    """Draw the page."""
    st.title("Select frames to label")
    summary = resources.project_picker("select_project")
    if summary is None:
        return
    project = summary.project
    sets = artifacts.embedding_sets(resources.engine(), project.id)
    embed_panel(project, summary.frames, expanded=not sets)
    if not sets:
        st.info("Selectors compare frame embeddings: embed the project above first (a tiny backbone is enough to "
                "start; pretrain on your footage later for better picks).")
        return
    run_panel(project, sets)
    review_panel(project)


def embed_panel(project: ProjectInfo, frames: int, expanded: bool) -> None:
    """Embed the project's frames now (small projects) or as an embed job."""
    engine = resources.engine()
    checkpoints = [c for c in artifacts.checkpoints(engine, project.id) if c.kind in PRETRAINED_KINDS]
    with st.expander("Embed the project's frames", expanded=expanded):
        by_id = {c.id: c for c in checkpoints}
        left, middle, right = st.columns(3)
        checkpoint_id = left.selectbox(  # the project's newest pretrained encoder first, when it has one
            "Weights", [None] + list(by_id), index=1 if by_id else 0, key="select_embed_checkpoint",
            format_func=lambda i: "random init (no pretraining)" if i is None
            else f"checkpoint {i}: {by_id[i].kind} {by_id[i].backbone} step {by_id[i].step}")
        backbone = middle.selectbox("Backbone (ignored with a checkpoint)", BACKBONE_NAMES,
                                    index=BACKBONE_NAMES.index(DEFAULT_BACKBONE), key="select_embed_backbone")
        img_size = int(right.number_input("Image size", min_value=32, max_value=1024, value=224, step=32,
                                          key="select_embed_size"))
        inline_col, job_col = st.columns(2)
        inline = inline_col.button(f"Embed here now ({frames} frames)", key="select_embed_inline",
                                   disabled=frames > INLINE_EMBED_MAX_FRAMES or frames == 0,
                                   help=f"Runs in the web server; for projects up to {INLINE_EMBED_MAX_FRAMES} frames")
        queued = job_col.button("Queue an embed job", key="select_embed_job")
    params = {"project": project.name, "checkpoint_id": checkpoint_id, "backbone": backbone, "img_size": img_size,
              "random_init": checkpoint_id is None}
    if queued:
        try:
            job = library.submit_job(engine, "embed", params, project.name)
        except ValueError as exc:
            st.error(literal(exc))
        else:
            st.success(f"Queued embed job {job.id}; a running `segloop worker` picks it up (see **Jobs**).")
    if inline:
        embed_inline(project, checkpoint_id, backbone, img_size)


def embed_inline(project: ProjectInfo, checkpoint_id: int | None, backbone: str, img_size: int) -> None:
    """Embed in this process with a progress bar, then rerun to show the new set."""
    from segloop.platform.services.embedding import embed_project

    bar = st.progress(0.0, text="embedding…")
    try:
        created = embed_project(project.name, backbone, None, img_size, settings=resources.settings(),
                                checkpoint_id=checkpoint_id, random_init=checkpoint_id is None,
                                progress=lambda f, m="": bar.progress(min(max(f, 0.0), 1.0),
                                                                      text=literal(m or "embedding…", one_line=True)))
    except (ValueError, LookupError) as exc:
        st.error(literal(exc))
        return
    st.session_state["select_set"] = created.id
    st.toast(f"Embedding set {created.id}: {created.count} frames, {created.dim} dims")
    st.rerun()


def strategy_params(info: StrategyInfo, project_id: int) -> dict[str, Any]:
    """Widgets for a strategy's keyword parameters (defaults from the registry); returns the values set."""
    values: dict[str, Any] = {}
    if not info.params:
        st.caption("This strategy has no parameters.")
        return values
    engine = resources.engine()
    columns = st.columns(4)
    for position, (name, default) in enumerate(info.params.items()):
        column = columns[position % len(columns)]
        key = f"select_param_{info.name}_{name}"
        if name == "signal":
            values[name] = signal_picker(column, key, explore.score_names(engine, project_id))
        elif name == "video_id":
            names = {v.id: v.name for v in library.project_videos(engine, project_id)}
            values[name] = column.selectbox("video", [None, *names], key=key,
                                            format_func=lambda i, names=names: "(the longest video)" if i is None
                                            else names[i])
        elif name == "device":
            index = DEVICES.index(default) if default in DEVICES else 0
            values[name] = column.selectbox("device", DEVICES, index=index, key=key)
        elif isinstance(default, bool):
            values[name] = column.checkbox(name, value=default, key=key)
        elif isinstance(default, int):
            values[name] = int(column.number_input(name, value=default, step=1, key=key))
        elif isinstance(default, float):
            values[name] = float(column.number_input(name, value=default, key=key, format="%.3f"))
        else:
            text = column.text_input(name, value="" if default is None else str(default), key=key)
            values[name] = text.strip() or None
    return {k: v for k, v in values.items() if v != info.params[k]}


def signal_picker(column, key: str, names: list[str]) -> str | None:
    """The uncertainty signal a strategy ranks by: one the project has recorded, the first by default (a
    strategy given no name fails as soon as a project has two signals); None, with a warning, when it has none."""
    if not names:
        column.warning("No per-frame uncertainty recorded yet: propagate masks or predict with a VSS model first.")
        return None
    if st.session_state.get(key) not in names:
        st.session_state.pop(key, None)
    return column.selectbox("signal", names, key=key, help="The per-frame uncertainty the strategy ranks by.")


def run_panel(project: ProjectInfo, sets: list[EmbeddingSetInfo]) -> None:
    """Strategy, parameters, budget and constraints; Run stores a selection run (or queues a select job)."""
    engine = resources.engine()
    by_id = {s.id: s for s in sets}
    registry = selection.strategies()
    st.subheader("Run a selection")
    set_col, strategy_col = st.columns([2, 1])
    set_id = set_col.selectbox("Embedding set", list(by_id), key="select_set",
                               format_func=lambda i: f"{i}: {by_id[i].backbone} · {by_id[i].count} frames")
    names = list(registry)
    strategy = strategy_col.selectbox("Strategy", names, index=names.index("kcenter") if "kcenter" in names else 0,
                                      key="select_strategy")
    st.caption(registry[strategy].summary)
    params = strategy_params(registry[strategy], project.id)
    videos = {v.id: v for v in library.project_videos(engine, project.id)}
    budget_col, gap_col, cap_col, dup_col = st.columns(4, vertical_alignment="bottom")
    budget = int(budget_col.number_input("Budget (frames)", min_value=1, max_value=10_000, value=10,
                                         key="select_budget"))
    gap = int(gap_col.number_input("Min gap (frames)", min_value=0, value=0, key="select_gap"))
    cap = int(cap_col.number_input("Max per video (0 = no cap)", min_value=0, value=0, key="select_cap"))
    one_per_group = dup_col.checkbox("One per near-duplicate group", value=True, key="select_dup")
    scope = st.multiselect("Only these videos (empty = all)", list(videos), key="select_videos",
                           format_func=lambda i: videos[i].name)
    more = more_constraints(engine, project.id)
    as_job = by_id[set_id].count > INLINE_POOL_MAX
    as_job = st.toggle("Run as a background job", value=as_job, disabled=as_job, key="select_as_job",
                       help=f"Pools over {INLINE_POOL_MAX} frames always run as a select job")
    if not st.button("Run selection", type="primary", key="select_run_go"):
        return
    values = {"project": project.name, "strategy": strategy, "budget": budget, "params": params,
              "embedding_set_id": set_id, "min_gap_frames": gap, "max_per_video": cap or None, "videos": list(scope),
              "one_per_duplicate_group": one_per_group, **more}
    try:
        if as_job:
            job = library.submit_job(engine, "select", values, project.name)
            st.success(f"Queued select job {job.id}; its run appears below when a worker has finished it.")
            return
        with st.spinner(f"Running {strategy} on {by_id[set_id].count} frames…"):
            run = selection.select_values(values, settings=resources.settings(), allow_empty=False)
    except (ValueError, LookupError) as exc:
        st.error(f"Selection not run: {literal(exc)}")
        return
    st.session_state["select_review_run"] = run.selection.id
    st.success(f"Selection run {run.selection.id}: {len(run.items)} frame(s) picked by {strategy}.")


def more_constraints(engine, project_id: int) -> dict:
    """The select operation's less common constraints, folded away: a gap in seconds, a time range, and frames
    that are labelled or were picked before (left out by default)."""
    with st.expander("More constraints"):
        gap_col, start_col, end_col = st.columns(3)
        gap_seconds = gap_col.number_input("Min gap (seconds)", min_value=0.0, value=0.0, key="select_gap_seconds")
        start = start_col.number_input("From (seconds)", min_value=0.0, value=0.0, key="select_from")
        end = end_col.number_input("To (seconds; 0: the end)", min_value=0.0, value=0.0, key="select_to",
                                   help="Frames whose time in their video lies in [from, to].")
        include_labeled = st.checkbox("Include frames that already have masks", key="select_include_labeled")
        include_selected = st.checkbox("Include frames picked by earlier runs", key="select_include_selected")
    if start == end == 0:
        time_range = []
    else:  # an open end is the project's latest frame, looked up only then (a scan of its frames)
        time_range = [float(start), float(end) if end > 0 else
                      max(math.ceil(library.project_time_span(engine, project_id)), start)]
    return {"min_gap_seconds": float(gap_seconds), "time_range": time_range,
            "include_labeled": include_labeled, "include_selected": include_selected}


def review_panel(project: ProjectInfo) -> None:
    """A run's ranked picks with thumbnails and reasons; accept all or some into the labeling queue."""
    engine = resources.engine()
    runs = explore.project_selections(engine, project.id)
    st.subheader("Review picks")
    flash = st.session_state.pop("select_flash", None)
    if flash:
        st.success(flash)
    if not runs:
        st.caption("No selection run yet.")
        return
    by_id = {r.id: r for r in runs}
    wanted = st.session_state.pop("select_review_run", None)
    if wanted in by_id:
        st.session_state["select_review"] = wanted
    run_id = st.selectbox("Selection run", list(by_id), key="select_review",
                          format_func=lambda i: f"run {i}: {by_id[i].strategy}, budget {by_id[i].budget}, "
                                                f"{by_id[i].created_at:%Y-%m-%d %H:%M}")
    pages = st.session_state.get("select_review_page", 1)
    page = explore.review_page(engine, run_id, (pages - 1) * REVIEW_PAGE, REVIEW_PAGE)
    counts = " · ".join(f"{n} {s}" for s, n in sorted(page.by_status.items()))
    st.caption(f"{page.total} pick(s): {counts or 'none'}. Unticked picks are rejected when you accept the checked "
               "ones; the Label page's queue for this run holds the accepted and proposed picks.")
    if page.total > REVIEW_PAGE:
        st.number_input("Review page", min_value=1, max_value=-(-page.total // REVIEW_PAGE), step=1,
                        key="select_review_page")
    keep = pick_grid(run_id, page.items)
    accept_col, all_col, _ = st.columns([2, 2, 3])
    if accept_col.button("Accept checked, reject unticked", type="primary", key="select_accept_checked",
                         disabled=not page.items):
        accepted = [f for f, k in keep.items() if k]
        rejected = [f for f, k in keep.items() if not k]
        finish_review(explore.review_picks(engine, run_id, accepted, rejected), run_id)
    if all_col.button("Accept all picks", key="select_accept_all", disabled=not page.total):
        finish_review(explore.accept_all(engine, run_id), run_id)


def pick_grid(run_id: int, items: list[explore.ReviewItem]) -> dict[int, bool]:
    """Thumbnails of the picks with rank, score, reason and a keep checkbox; {frame id: keep}."""
    data_dir = resources.settings().data_dir
    columns = st.columns(REVIEW_COLUMNS)
    keep = {}
    for position, item in enumerate(items):
        with columns[position % REVIEW_COLUMNS]:
            st.image(str(data_dir / item.frame.thumb_path),
                     caption=f"#{item.rank} · {literal(item.video_name, one_line=True)} #{item.frame.index} · "
                             f"{item.status}")
            st.caption(f"score {item.score:.3f} · {literal(item.reason, one_line=True)}")
            keep[item.frame.id] = st.checkbox("keep", value=item.status != "rejected",
                                              key=f"select_keep_{run_id}_{item.frame.id}")
    return keep


def finish_review(changed: int, run_id: int) -> None:
    """Point the Label page at the run and report what changed."""
    st.session_state["label_queue"] = ("selection", run_id)
    st.session_state["select_flash"] = (f"{changed} pick(s) updated. Open the **Label** page: its queue is "
                                        f"selection run {run_id}.")
    resources.forget_reads()
    st.rerun()
