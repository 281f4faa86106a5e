"""Results page: J&F / mIoU per model and sequence, active-learning and keyframe curves from the benchmark files,
and a per-sequence drill-down of predicted (propagated) masks against the human masks of the same frames."""
from __future__ import annotations

import json

import altair as alt
import pandas as pd
import streamlit as st

from segloop.platform.services import checkpoints, explore, labeling, library, models
from segloop.ui import resources, signin
from segloop.ui.literal import literal
from segloop.ui.views import review as review_view

PREFERRED_METRICS = ("J&F", "J", "F", "mIoU")
DRILL_PAGE = 6


def render() -> None:
    """Draw the page."""
    st.title("Results")
    summary = resources.project_picker("results_project")
    if summary is not None:
        models_section(summary.project.id)
    metrics_section(summary.project.id if summary else None)
    overall_section(summary.project.id if summary else None)
    if summary is not None:
        model_choice_section(summary.project.id)
    bench_section()
    if summary is not None:
        drill_down(summary.project.id)
        review_view.annotator_figures_section(summary.project.id)
        if signin.may("export"):
            export_section(summary.project.name)


def models_section(project_id: int) -> None:
    """The project's models with date, job, parameters and score against the baseline; one model's training curve."""
    found = checkpoints.checkpoint_summaries(resources.engine(), project_id)
    st.subheader("Models")
    if not found:
        st.info("No model yet: pretrain or fine-tune on the **Jobs** page.")
        return
    st.dataframe([s.row() for s in found], hide_index=True,
                 column_config={"value": st.column_config.NumberColumn("value", format="%.3f"),
                                "baseline value": st.column_config.NumberColumn("baseline value", format="%.3f")})
    below = [s for s in found if s.below_baseline]
    if below:
        st.warning("Below its baseline (no better than " + ", ".join(
            f"{s.baseline_name}: checkpoint {s.info.id} {s.score_name} {s.score:.3f} ≤ {s.baseline:.3f}"
            for s in below) + "). Label more frames or check the encoder before trusting these models.")
    by_id = {s.info.id: s for s in found}
    chosen = st.selectbox("Training curve of", list(by_id), key="results_curve_model",
                          format_func=lambda i: by_id[i].label)
    training_curve(chosen)


def training_curve(checkpoint_id: int) -> None:
    """Loss per step of one model's training, and its validation scores."""
    curve = checkpoints.training_curve(resources.engine(), checkpoint_id, resources.settings())
    if curve.validation:
        st.caption("Validation: " + " · ".join(f"{k} {v:.3f}" for k, v in sorted(curve.validation.items())))
    if not curve.points:
        st.caption(f"No per-step values for checkpoint {checkpoint_id}: {literal(curve.source)}.")
        return
    chart = (alt.Chart(pd.DataFrame(curve.points)).mark_line()
             .encode(x=alt.X("step:Q", title="step"), y=alt.Y("value:Q", title="loss"), color="series:N",
                     tooltip=["series", "step", alt.Tooltip("value:Q", format=".4f")])
             .properties(height=260))
    st.altair_chart(chart, width="stretch")
    st.caption(f"Source: {literal(curve.source)}.")


def export_section(project: str) -> None:
    """Download the project's newest annotations as DAVIS palette PNGs (zip) or COCO JSON with RLE masks."""
    st.subheader("Export annotations")
    fmt_col, button_col = st.columns([2, 1], vertical_alignment="bottom")
    fmt = fmt_col.radio("Format", list(library.EXPORT_FORMATS), horizontal=True, key="results_export_format",
                        format_func=library.EXPORT_FORMATS.get)
    if button_col.button("Prepare the download", key="results_export_go"):
        try:
            st.session_state["results_export"] = (project, fmt, *library.export_annotations(
                resources.engine(), project, fmt, resources.settings()))
        except (ValueError, LookupError) as exc:
            st.error(f"Export failed: {literal(exc)}")
            return
    ready = st.session_state.get("results_export")
    if ready and ready[:2] == (project, fmt):
        _, _, name, data, mime, note = ready
        if note:
            st.warning(f"Note: {literal(note)}.")
        st.download_button(f"Download {literal(name, one_line=True)} ({len(data) / 1024:.0f} KiB)", data,
                           file_name=name, mime=mime, key="results_export_download", type="primary")


def model_choice_section(project_id: int) -> None:
    """Which propagator each video trusts: leave-one-keyframe-out J&F on its own human masks."""
    rows = models.self_validation_table(project_id, resources.engine())
    if not rows:
        return
    st.subheader("Which model to trust on your footage")
    st.caption("Each labelled frame is hidden in turn and predicted from the others; the mean J&F per propagator. "
               "Propagation drafts use the best one per video.")
    st.dataframe(rows, hide_index=True)


def metrics_section(project_id: int | None) -> None:
    """A sequence × model table of one metric, with a grouped bar chart."""
    st.subheader("Scores per model and sequence")
    rows = explore.metric_rows(resources.engine(), project_id)
    if not rows:
        st.info("No scores yet. Propagating masks scores the held-out human-labeled frames (J&F); fine-tuning and "
                "evaluation jobs add theirs.")
        return
    names = sorted({r.metric for r in rows}, key=lambda n: (PREFERRED_METRICS.index(n) if n in PREFERRED_METRICS
                                                           else len(PREFERRED_METRICS), n))
    metric = st.radio("Metric", names, horizontal=True, key="results_metric")
    models, table = explore.metric_table(rows, metric)
    st.dataframe(table, hide_index=True,
                 column_config={m: st.column_config.NumberColumn(m, format="%.3f") for m in models})
    chart_rows = [{"sequence": r["sequence"], "model": m, metric: r[m]} for r in table for m in models
                  if r.get(m) is not None and r["sequence"] != "mean"]
    if chart_rows:
        chart = (alt.Chart(pd.DataFrame(chart_rows)).mark_bar()
                 .encode(x=alt.X("sequence:N", title=None), xOffset="model:N", y=alt.Y(f"{metric}:Q",
                         scale=alt.Scale(domain=[0, 1])), color="model:N", tooltip=["sequence", "model", metric])
                 .properties(height=280))
        st.altair_chart(chart, width="stretch")


def overall_section(project_id: int | None) -> None:
    """Whole-project scores per model (fine-tuning and evaluation: mIoU, J&F plain vs the VOS model…) and per class."""
    engine = resources.engine()
    overall = explore.metric_rows(engine, project_id, scope="overall")
    per_class = explore.metric_rows(engine, project_id, scope="class")
    if not overall and not per_class:
        return
    st.subheader("Scores per model (whole project)")
    if overall:
        names, table = explore.overall_table(overall)
        st.dataframe(table, hide_index=True,
                     column_config={n: st.column_config.NumberColumn(n, format="%.3f") for n in names})
    if per_class:
        names = sorted({r.metric for r in per_class})
        metric = st.radio("Per-class metric", names, horizontal=True, key="results_class_metric")
        models, table = explore.metric_table(per_class, metric)
        names = checkpoints.project_class_names(engine, project_id)
        st.dataframe([{("class" if k == "sequence" else k): (class_name(v, names) if k == "sequence" else v)
                       for k, v in row.items()} for row in table],
                     hide_index=True, column_config={m: st.column_config.NumberColumn(m, format="%.3f")
                                                     for m in models})


def class_name(key: str, names: list[str]) -> str:
    """A class index as its name ('1' → 'person'); other keys (the mean row) unchanged."""
    return names[int(key)] if key.isdigit() and int(key) < len(names) else key


def bench_section() -> None:
    """Curves of the active-learning and keyframe benchmark files under $SEGLOOP_DATA_DIR/bench/."""
    st.subheader("Benchmarks")
    files = explore.bench_files(resources.settings().data_dir)
    curves, others = [], []
    for path in files:
        try:
            curve = explore.parse_bench(path)
        except ValueError as exc:
            st.warning(literal(exc))
            continue
        (curves if curve is not None else others).append(curve or path)
    if not curves:
        st.info("No active-learning or keyframe benchmark results yet (`segloop bench active-learning`, "
                "`segloop bench keyframes` write them under the data dir's bench/ folder).")
    for curve in curves:
        bench_chart(curve)
    if others:
        with st.expander(f"Other benchmark files ({len(others)})"):
            chosen = st.selectbox("File", others, format_func=lambda p: p.name, key="results_other_bench")
            try:
                st.json(json.loads(chosen.read_text()), expanded=1)
            except (OSError, ValueError) as exc:
                st.error(f"{literal(chosen.name)}: {literal(exc)}")


def bench_chart(curve: explore.BenchCurve) -> None:
    """Mean over seeds per strategy as lines with a min–max band, and the ceiling as a dashed rule."""
    frame = pd.DataFrame(curve.points)
    st.markdown(f"**{literal(curve.title)}** · {literal(curve.path.name)}")
    base = alt.Chart(frame).encode(x=alt.X("x:Q", title=curve.x_label, axis=alt.Axis(format="~g")),
                                   color=alt.Color("series:N", title="strategy"))
    layers = [base.mark_area(opacity=0.15).encode(y="low:Q", y2="high:Q"),
              base.mark_line(point=True).encode(y=alt.Y("y:Q", title=curve.y_label),
                                                tooltip=["series", "x", alt.Tooltip("y:Q", format=".3f"), "runs"])]
    if curve.ceiling is not None:
        layers.append(alt.Chart(pd.DataFrame({"ceiling": [curve.ceiling]})).mark_rule(strokeDash=[6, 4], color="gray")
                      .encode(y="ceiling:Q"))
    st.altair_chart(alt.layer(*layers).properties(height=300), width="stretch")


def drill_down(project_id: int) -> None:
    """One sequence's frames with predicted masks, side by side with the human masks where both exist."""
    st.subheader("Per-sequence drill-down: predicted vs human masks")
    engine = resources.engine()
    videos = explore.videos_with_predictions(engine, project_id)
    if not videos:
        st.info("No predicted masks yet: propagate from labeled frames on the **Label** page.")
        return
    by_id = {v: (name, count) for v, name, count in videos}
    video_col, pairs_col, page_col = st.columns([3, 2, 1], vertical_alignment="bottom")
    video_id = video_col.selectbox("Sequence", list(by_id), key="results_video",
                                   format_func=lambda v: f"{by_id[v][0]} ({by_id[v][1]} frames with predictions)")
    only_pairs = pairs_col.toggle("Only frames that also have a human mask", key="results_pairs")
    page = int(st.session_state.get("results_drill_page", 1))
    frames, total = explore.predicted_frames(engine, video_id, (page - 1) * DRILL_PAGE, DRILL_PAGE, only_pairs)
    pages = max(1, -(-total // DRILL_PAGE))
    if page > pages:
        st.session_state["results_drill_page"] = page = 1
        frames, total = explore.predicted_frames(engine, video_id, 0, DRILL_PAGE, only_pairs)
    page_col.number_input("Page", min_value=1, max_value=pages, key="results_drill_page")
    st.caption(f"{total} frame(s) · page {page} of {pages}")
    data_dir = resources.settings().data_dir
    for frame, _ in frames:
        comparison = explore.compare_masks(engine, frame.id)
        image = labeling.frame_image(data_dir, frame)
        predicted_col, human_col = st.columns(2)
        predicted_col.image(labeling.overlay(image, comparison.predicted, 0.55), width="stretch",
                            caption=f"#{frame.index} predicted (propagated)")
        if comparison.human is None:
            human_col.caption(f"#{frame.index}: no human mask to compare with yet")
            continue
        scores = ", ".join(f"object {k}: IoU {v:.3f}" for k, v in comparison.iou.items()) or "no objects"
        human_col.image(labeling.overlay(image, comparison.human, 0.55), width="stretch",
                        caption=f"#{frame.index} human · {scores}")
