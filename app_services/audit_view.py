"""Components of the Audit page: the audit's options, the report (stored, or run on request),
its headline, and one section per check (leakage, metadata baseline, attention, masked
evaluation, generalisation, external set). Each draws from the report; the numbers come from
:mod:`.auditing` and :mod:`.generalising`."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib.audit.generalisation import ADVERSARIAL_WEIGHT
from cxrlib.core.config import ExplainConfig

from cxrlib import explain
from cxrlib import lungs

from .auditing import (STOPPED, audit_failure, audit_job, cached_audit, start_audit, stopped_here,
                       watch_audit)
from .core import chart, fmt, md_literal, plain_table, table
from .data import image_grid
from .explaining import VIEWER_LOOK, cam_methods, method_label
from .generalising import (analysis_figures, loso_figure, loso_table, metadata_features,
                           subgroup_table)
from .search_findings import search_findings_section
from .work import WorkStopped


def audit_options_ui() -> dict[str, Any]:
    """The audit's options, as :func:`.auditing.start_audit`'s keyword arguments."""
    c1, c2, c3 = st.columns([2, 1, 1])
    external = c1.text_input("External labelled folder (optional): the drop from the run's own "
                             "test split", key="au_external", persist_state="session").strip()
    max_films = c2.select_slider("Test films for CAM and masking", [50, 100, 200, 500, "all"],
                                 200, key="au_max", persist_state="session")
    methods = cam_methods()
    method = c3.selectbox("CAM method", methods, index=methods.index(ExplainConfig().method),
                          key="au_method", format_func=method_label, persist_state="session",
                          help="Each at its own default layer. Score-CAM and Ablation-CAM run the "
                               "model once per channel: slow over many films on a CPU.")
    adversarial = ADVERSARIAL_WEIGHT if st.toggle(
        "Also measure a source-adversarial head on leave-one-source-out (about doubles that "
        "step)", key="au_adv", persist_state="session") else 0.0
    masks = st.text_input("Lung masks folder (optional): human masks of this dataset's films "
                          "(cxr3-lungs or Radiography DB layout) win over predicted ones",
                          key="au_masks", persist_state="session").strip()
    return {"external": external, "max_films": None if max_films == "all" else int(max_films),
            "method": method, "adversarial": adversarial, "masks": masks}


def audit_report(run, ds, options: dict[str, Any]):
    """The stored report of these options; else the progress of the audit of these options when
    one is running (whoever started it); else a button that starts it, under the reason the last
    audit of these options failed or was stopped, if it did. The page stops until there is a
    report."""
    report = cached_audit(run, **options)
    if report is not None:
        return report
    job = audit_job(run, **options)
    if job is not None:  # running (started by the button's callback, or by someone else)
        try:
            return watch_audit(job)
        except WorkStopped:
            stopped_here()
        except Exception as exc:  # noqa: BLE001 - the audit's own error (a bad external
            if exc is not job.out.get("error"):  # folder...) is said below, kept for all
                raise
    failure = audit_failure(run, **options)
    if failure is not None:  # it failed, watched or not: said to whoever comes, with the button
        st.error(f"The last audit with these options could not finish: {failure}",
                 icon=":material/error:")
    if st.session_state.pop(STOPPED, False):
        st.info("The audit was stopped before it finished: nothing was kept.",
                icon=":material/stop_circle:")
    # one element, which the audit's box takes the place of (no stale button under it)
    with st.empty().container():
        st.button("Run the audit", type="primary", icon=":material/policy:",
                  on_click=start_audit, args=(run, ds), kwargs=options)
        st.info("The audit reads every film once and explains the test films: a minute or more "
                "on a CPU for a real dataset. Its result is kept for this run.")
    st.stop()


def audit_headline(report, run) -> None:
    """The five headline numbers, the findings (warnings by severity) and unreadable films."""
    summary, meta, chance = report.summary(), report.metadata, fmt(1 / len(run.classes))
    m = st.columns(5)
    m[0].metric("CNN test accuracy", fmt(summary["cnn_accuracy"]))
    m[1].metric("Metadata-only accuracy", fmt(summary["metadata_accuracy"]),
                help=(f"Chance: {fmt(meta.majority_rate)} (the majority class). Balanced "
                      f"accuracy {fmt(meta.balanced_accuracy)} (chance {chance})") if meta else "—")
    m[2].metric("CAM mass inside the lungs", fmt(summary["cam_in_lung_share"].get("all"), ".0%"))
    m[3].metric("Accuracy, lungs blanked", fmt(summary["lungs_blanked_accuracy"]),
                help=blanked_interval_text(report))
    m[4].metric("Duplicate clusters", summary["duplicate_clusters"])
    for verdict in report.verdicts:
        (st.warning if verdict_is_alarming(verdict) else st.info)(verdict)
    if report.skipped:  # films that could not be decoded: left out, the audit went on
        st.warning(f"{len(report.skipped)} films could not be read and were left out of the "
                   "audit steps named below.", icon=":material/broken_image:")
        st.dataframe(report.skipped, hide_index=True)


def leakage_section(report) -> None:
    """Patients and near-duplicate clusters on more than one side, and a cluster browser."""
    st.subheader("Leakage: patients and near-duplicates on more than one side")
    leaks = [t for t in (report.leakage.get("clusters"), report.leakage.get("patients"))
             if t is not None and len(t)]
    for found in leaks:
        st.dataframe(found, hide_index=True)
    if not leaks:
        st.success("No patient and no near-duplicate cluster has films on two sides of this split.")
    clusters = report.duplicate_clusters
    if len(clusters):
        cid = st.selectbox("Browse a duplicate cluster", sorted(clusters["cluster_id"].unique()),
                           key="au_cluster", format_func=lambda i: f"cluster {i}")
        films = clusters[clusters["cluster_id"] == cid].head(12)
        image_grid(films, [md_literal(f"{r.label} · {r.rel_path}") for r in films.itertuples()])


def metadata_section(report, run) -> None:
    """The forest that sees acquisition properties only: importances, confusion, its features."""
    st.subheader("Metadata-only baseline")
    meta = report.metadata
    if meta is None:
        return
    left, right = st.columns(2)
    left.bar_chart(meta.importances, x="feature", y="importance", horizontal=True,
                   sort="-importance", x_label="", y_label="importance in the forest")
    right.dataframe(plain_table(meta.confusion))
    st.caption(f"Balanced accuracy {fmt(meta.balanced_accuracy)} (chance "
               f"{fmt(1 / len(run.classes))}); accuracy {fmt(meta.accuracy)} (majority class "
               f"{fmt(meta.majority_rate)}). The forest sees acquisition properties only, never "
               "the inside of the body:")
    st.dataframe(metadata_features(), hide_index=True)


def attention_section(report) -> None:
    """Where the model looks: the attention table and the gallery of films looking elsewhere."""
    st.subheader("Where the model looks")
    st.caption(lung_masks_text(report))
    table(report.attention_summary)
    st.markdown("Films with the most CAM mass outside the lungs, as the model saw them (left: "
                "the lung mask the share was computed with, right: the CAM with the same outline)")
    for view in gallery_views(report):
        a, b, c = st.columns([2, 2, 3])
        a.image(view["outline"])
        b.image(view["cam"])
        c.markdown(f"**{md_literal(view['rel_path'])}**  \n{view['label']} → {view['pred']}  \n"
                   f"{view['share']:.0%} of the CAM inside the lungs  \n"
                   f"mask: {view['masks']}, model input {view['size']} px")


def masked_section(report) -> None:
    """Accuracy with the lungs blanked or kept, and per source."""
    st.subheader("Masked evaluation")
    st.caption("Balanced accuracy is compared with chance (one over the classes); accuracy with "
               "the majority-class rate. 'called · <class>': the share of films the model calls "
               "that class under each masking. Films whose lung mask is flagged are left out "
               "(films); masks: which masks blanked or kept the lungs.")
    table(report.masked)
    st.subheader("Per source")
    table(report.per_source)


def generalisation_section(report, run, ds) -> None:
    """Leave-one-source-out, the source probe, what the workspace's sweeps found on ``ds``, and the
    test split's subgroups, when measured."""
    gen = report.generalisation
    if gen is None:
        return
    st.subheader("Will it work at another hospital?")
    if gen.loso is not None:
        g, probe = st.columns(3), gen.source_probe or {}
        g[0].metric("Test-split accuracy", fmt(gen.loso.test_accuracy))
        g[1].metric("Expected at an unseen source", fmt(gen.loso.expected_accuracy),
                    help=unseen_source_text(gen.loso))
        g[2].metric("Source probe accuracy", fmt(probe.get("accuracy")),
                    help=f"A linear probe naming the source from the backbone features (grouped "
                         f"folds); majority source {fmt(probe.get('majority_rate'))}, within one "
                         f"class balanced {fmt(probe.get('within_class_balanced_accuracy'))}")
        chart(loso_figure(gen), key="au_loso")
        table(loso_table(gen.loso, run.classes))
        for note in gen.loso.notes:
            st.caption(note)
    for note in gen.notes:
        st.info(note)
    search_findings_section(ds)
    if gen.subgroups is not None:
        st.markdown("**Test split by subgroup** (worst first; red: the whole 95 % CI lies below "
                    "the overall accuracy)")
        forest, heat = analysis_figures(gen.subgroups)
        chart(forest, key="au_sg_forest")
        chart(heat, key="au_sg_heat")


def external_section(report) -> None:
    """The external set's figures and its recall by subgroup, when one was given."""
    if not report.external:
        return
    st.subheader("External set")
    st.json({k: v for k, v in report.external.items() if k != "verdict"})
    found = report.external_subgroups
    if found is not None:
        st.markdown("**Recall by subgroup of the external set**: a class recall that is high in "
                    "one subgroup and near zero in another is the finding, not the average.")
        forest, heat = analysis_figures(found)
        chart(heat, key="au_ext_heat")
        chart(forest, key="au_ext_forest")
        st.dataframe(subgroup_table(found.table, found.classes), hide_index=True)


def gallery_views(report, n: int = 4) -> list[dict[str, Any]]:
    """The gallery's first ``n`` films exactly as they were scored, ready to draw.

    Each is the model input (at its own size, e.g. 224 x 224) with the outline of the very
    mask the in-lung share was computed with, and the CAM over that input with the same outline.
    """
    views = []
    for g in report.gallery_films[:n]:
        cam = explain.overlay(g.image, g.heatmap, alpha=VIEWER_LOOK.alpha,
                              colormap=VIEWER_LOOK.colormap, threshold=VIEWER_LOOK.threshold)
        views.append({"rel_path": g.rel_path, "label": g.label, "pred": g.pred,
                      "share": g.in_lung_share, "masks": g.mask_source,
                      "size": f"{g.image.shape[1]}×{g.image.shape[0]}",
                      "outline": lungs.draw_lung_outline(g.image, g.mask),
                      "cam": lungs.draw_lung_outline(cam, g.mask)})
    return views


def lung_masks_text(report) -> str:
    """Which lung masks the attention and masked figures used, and how many films were left out."""
    c = report.lung_masks
    if not c:
        return ""
    where = " and ".join(f"{c[k]} {k}" for k in ("predicted", "dataset") if c.get(k))
    text = (f"Lung masks of the {c['films']} test films: {where or 'none'}. `lung_area`: the share "
            "of the model input inside the mask, what a CAM spread evenly would score.")
    if c.get("flagged"):
        text += (f" {c['flagged']} predicted masks are flagged as poor (quality below the "
                 "segmenter's threshold): those films are left out of the in-lung shares, the "
                 "gallery and the masked evaluation.")
    return text


def verdict_is_alarming(verdict) -> bool:
    """Whether an audit finding (:class:`cxrlib.audit.findings.Finding`) is a warning sign
    (shown as a warning, not a note): its severity, never its wording."""
    return verdict.alarming


def blanked_interval_text(report) -> str:
    """The 95 % interval of the lungs-blanked accuracy (Wilson on the films scored: the
    masked evaluation counts films, not patients), as help text."""
    from cxrlib.evaluation.intervals import wilson_interval  # noqa: PLC0415

    masked = getattr(report, "masked", None)
    if masked is None or not len(masked) or "lungs blanked" not in set(masked["condition"]):
        return "Not measured."
    row = masked.set_index("condition").loc["lungs blanked"]
    n = int(row["n"])
    low, high = wilson_interval(int(round(float(row["accuracy"]) * n)), n)
    return (f"95 % CI {fmt(low)}–{fmt(high)} (Wilson, {n} films). Near chance means the model "
            "needs the lungs; well above it, it reads something else.")


def unseen_source_text(loso) -> str:
    """Why the expected accuracy at an unseen source has a range, not a CI: it is a mean over a
    few held-out sources, each one sample of 'a new hospital'."""
    acc = loso.table["held_out_accuracy"].astype(float)
    if not len(acc):
        return "No held-out source."
    return (f"Leave one source out: the run's head trained once per source with that source "
            f"held out, scored on it; the mean over {len(acc)} sources. Range over sources "
            f"{fmt(acc.min())}–{fmt(acc.max())}; no confidence interval: {len(acc)} sources are "
            "too few samples of 'another hospital' for one to mean anything.")
