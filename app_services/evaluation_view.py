"""Components of the Evaluation page: the run it shows (the sidebar's current run, and one to
compare with), each run's headline with its intervals, figures aligned run by run on shared
axes, subgroups in one order, predictive values and sample grids, every number naming its run."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib.evaluation.intervals import MIN_PATIENTS
from cxrlib.viz import figures
from cxrlib.viz import subgroups as sgfigs

from .address import from_address, to_address
from .bytecache import byte_cached
from .core import chart, fmt, md_literal, table
from .data import image_grid
from .evaluation import (bootstrap, ci_table, evaluation, model_file, predictive_values,
                         report_table, sample_records, test_predictions)
from .generalising import subgroup_columns, subgroup_figures, subgroup_table, subgroups
from .review_queue import review_link
from .review_stats import download_csv
from .runs import dataset_runs, get_run, gone_message, leakage_warning, run_label, run_stamp

NO_OTHER = ""
COMPARE = "ev_other"


def owner(runs: list, run) -> str:
    """How a number names its run: ``Run A · 1a2b3c4d`` (``Run 1a2b3c4d`` when alone)."""
    if len(runs) == 1:
        return f"Run {run.id[:8]}"
    return f"Run {'AB'[runs.index(run)]} · {run.id[:8]}"


def runs_shown(ds, current) -> list:
    """The sidebar's current run, and the run chosen to compare with (``?compare=``)."""
    others = [r for r in dataset_runs(ds, ds.task)
              if r.id != current.id and (r.status() or {}).get("state") == "done"]
    labels = {NO_OTHER: "(none: this run alone)", **{r.id: run_label(r) for r in others}}
    from_address("compare", COMPARE, valid=list(labels))
    if st.session_state.get(COMPARE) not in labels:
        if note := gone_message(st.session_state.get(COMPARE), "it is no longer compared."):
            st.warning(note, icon=":material/warning:")
        st.session_state[COMPARE] = NO_OTHER
    st.caption(f"Showing the sidebar's current run, **{run_label(current)}**; pick another run "
               "there to show it.")
    other = st.selectbox("Compare with", list(labels), format_func=labels.get, key=COMPARE,
                         help="A second run side by side, on the same axes, with a paired test "
                              "of whether the difference is real.")
    to_address("compare", other or None)
    return [current] + ([get_run(other)] if other else [])


def headline(runs: list, run, threshold: float | None) -> None:
    """A run's name, warnings and headline metrics, each with its 95 % interval."""
    ev, ci = evaluation(run, threshold)["eval"], bootstrap(run, 1000, threshold)
    st.subheader(f"Run `{run.id[:8]}`")
    st.caption(("A · " if len(runs) == 2 and runs[0] is run else "B · " if len(runs) == 2 else "")
               + run_label(run))
    if run.val_is_test:
        st.warning("The test split doubled as validation (published 80/20): these test "
                   "metrics are optimistic.", icon=":material/warning:")
    if warning := leakage_warning(run):
        st.warning(warning, icon=":material/warning:")
    acc, auc = ci["metrics"]["accuracy"], ci["metrics"].get("auc/macro", {})
    m1, m2, m3 = st.columns(3)
    m1.metric("Test accuracy", fmt(ev["accuracy"]),
              help=f"95 % CI {fmt(acc['low'])}–{fmt(acc['high'])}")
    m2.metric("Macro AUC", fmt(ev["auc"]["macro"]),
              help=f"95 % CI {fmt(auc.get('low'))}–{fmt(auc.get('high'))}")
    m3.metric("Test films", f"{ev['n']}", help=f"{ev.get('n_patients') or '?'} patients")
    st.caption(f"95 % CI of accuracy: {fmt(acc['low'])} – {fmt(acc['high'])} "
               f"({ci['n_boot']} {ci['unit']}-level bootstrap resamples); of the macro AUC: "
               f"{fmt(auc.get('low'))} – {fmt(auc.get('high'))}")


@byte_cached(0.02)
def _themed_figures(stamp: str, threshold, normalised: bool, zmax: float | None,
                    _run) -> list[tuple[str, Any]]:
    """A run's figures drawn for the dark surround, built once per run and settings for every
    session (building and theming them was most of an Evaluation rerun: about 0.6 of 0.95 s)."""
    res, ci = evaluation(_run, threshold), bootstrap(_run, 1000, threshold)
    return [(name, figures.themed(fig, "dark")) for name, fig in _build(_run, res, ci, normalised,
                                                                         zmax)]


def _figures(run, threshold, normalised: bool, zmax: float | None, *,
             copies: bool = False) -> list[tuple[str, Any]]:
    """The run's figures (cached; ``copies``: fresh copies a caller may change)."""
    figs = _themed_figures(run_stamp(run), threshold, normalised, zmax, run)
    return [(name, type(fig)(fig)) for name, fig in figs] if copies else figs


def _build(run, res, ci, normalised: bool, zmax: float | None) -> list[tuple[str, Any]]:
    ev = res["eval"]
    return [("hist", figures.training_curves_figure(run.history())),
            ("conf", figures.confusion_heatmap(ev["confusion"], ev["classes"], normalised, zmax)),
            ("roc", figures.roc_figure(res["roc"])), ("pr", figures.pr_figure(res["pr"])),
            ("cal", figures.reliability_figure(res["calibration"])),
            ("ci", figures.bootstrap_ci_figure(ci))]


def _data_range(fig, letter: str):
    """The numeric extent of the traces on a figure's first ``x`` or ``y`` axis (padded by
    5 %), or None when an axis is categorical or empty."""
    import numpy as np  # noqa: PLC0415

    values = []
    for trace in fig.data:
        if (getattr(trace, f"{letter}axis", None) or letter) != letter:
            continue
        data = getattr(trace, letter, None)
        if data is None:
            continue
        try:
            arr = np.asarray(data, float)
        except (TypeError, ValueError):
            return None
        values.append(arr[np.isfinite(arr)])
    values = np.concatenate(values) if values else np.array([])
    if not values.size:
        return None
    pad = 0.05 * (values.max() - values.min() or 1.0)
    return [float(values.min() - pad), float(values.max() + pad)]


def shared_ranges(figs: list) -> None:
    """Give side-by-side figures one range per axis: the union of their explicit ranges, or of
    their data where none is set (e.g. the training curves' loss); categorical axes stay."""
    for axis in ("xaxis", "yaxis"):
        ranges = [fig.layout[axis].range or _data_range(fig, axis[0]) for fig in figs]
        if all(r is not None for r in ranges) and len(ranges) > 1:
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
            for fig in figs:
                fig.layout[axis].range = [lo, hi]


def figure_rows(runs: list, threshold: float | None, normalised: bool) -> None:
    """Every figure of the runs: one run two to a row; two runs one row per figure, the
    runs' figures side by side on the same axes, each titled with its run."""
    zmax = max(max(map(max, evaluation(r, threshold)["eval"]["confusion"]["counts"]))
               for r in runs)
    per_run = [_figures(r, threshold, normalised, zmax, copies=len(runs) > 1) for r in runs]
    if len(runs) == 1:
        items = per_run[0]
        for start in range(0, len(items), 2):
            for col, (name, fig) in zip(st.columns(2), items[start:start + 2]):
                with col:
                    chart(fig, key=f"{name}_{runs[0].id}")
        table(report_table(evaluation(runs[0], threshold)["eval"]))
        table(ci_table(bootstrap(runs[0], 1000, threshold)))
        return
    for i in range(len(per_run[0])):
        shared_ranges([figs[i][1] for figs in per_run])
        for col, run, figs in zip(st.columns(len(runs)), runs, per_run):
            name, fig = figs[i]
            with col:
                chart(figures.whose(fig, owner(runs, run)), key=f"{name}_{run.id}")
    for label, of in (("Classification report", lambda r: report_table(
            evaluation(r, threshold)["eval"])), ("Bootstrap intervals", lambda r: ci_table(
            bootstrap(r, 1000, threshold)))):
        for col, run in zip(st.columns(len(runs)), runs):
            col.markdown(f"**{label} · {owner(runs, run)}**")
            table(of(run), col)


@byte_cached(0.02)
def _subgroup_figures(stamp: str, fingerprint: str, by: tuple, order: tuple, start: float,
                      _sub) -> list[tuple[str, Any]]:
    """A run's subgroup forest and recall heatmap, dark, built once per run, dataset, cut,
    order and x start for every session (0.5 of a warm Evaluation rerun's CPU otherwise)."""
    forest, heat = subgroup_figures(_sub, list(order), start)
    return [("forest", figures.themed(forest, "dark")), ("heat", figures.themed(heat, "dark"))]


def subgroups_ui(runs: list, ds) -> None:
    """Accuracy by subgroup of each run: one order (run A's, worst first) and one x scale."""
    st.subheader("Where it fails: accuracy by subgroup")
    available, default = subgroup_columns(runs[0], ds)
    by = st.multiselect("Cut the test split by", available, default=default, key="ev_by",
                        persist_state="session",
                        help="Any manifest column, or a derived attribute: binned width, height "
                             "and megapixels, format, JPEG quality, small re-encoded copy. Each "
                             "subgroup's 95 % CI is the wider of a patient bootstrap and the exact "
                             "interval on its patients; red: the whole CI lies below the overall "
                             f"accuracy; †: fewer than {MIN_PATIENTS} patients (never flagged).")
    if not by:
        return
    results = [subgroups(run, ds, by) for run in runs]
    order = list(zip(results[0]["table"]["column"], results[0]["table"]["value"]))[:30]
    for res in results[1:]:  # subgroups run A lacks go last
        order += [k for k in zip(res["table"]["column"], res["table"]["value"]) if k not in order]
    order = order[:30]
    start = min(sgfigs.forest_start(r["table"]["ci_low"], r["table"]["accuracy"],
                                    r["overall"]["accuracy"]) for r in results)
    for col, run, sub in zip(st.columns(len(runs)), runs, results):
        with col:
            flagged = sub["table"][sub["table"]["flagged"]]
            st.markdown(f"{owner(runs, run)}: {len(sub['table'])} subgroups, "
                        f"**{len(flagged)} flagged** (overall accuracy "
                        f"{fmt(sub['overall']['accuracy'])})")
            figs = _subgroup_figures(run_stamp(run), ds.fingerprint, tuple(by), tuple(order),
                                     start, sub)
            for name, fig in figs:
                chart(figures.whose(type(fig)(fig), owner(runs, run)) if len(runs) == 2 else fig,
                      key=f"sg_{name}_{run.id}")
            table(subgroup_table(sub["table"], sub["classes"]))
            st.download_button("Subgroups (CSV)", sub["csv"], f"subgroups-{run.id}.csv",
                               "text/csv", key=f"dl_sg_{run.id}")


def predictive_values_table(runs: list, threshold, target: str, prevalence: float):
    """One row per run: sensitivity, specificity, PPV and NPV, each with its 95 % interval."""
    import pandas as pd

    rows = []
    for run in runs:
        pv = predictive_values(run, threshold, target, prevalence)
        row = {"run": owner(runs, run)}
        for name, key in (("Sensitivity", "sensitivity"), ("Specificity", "specificity"),
                          ("PPV", "ppv"), ("NPV", "npv")):
            low, high = pv[f"{key}_ci"]
            row[name] = pv[key]
            row[f"{name} 95 % CI"] = f"{fmt(low)} – {fmt(high)}"
        rows.append(row)
    return pd.DataFrame(rows)


def predictive_values_ui(runs: list, threshold: float | None) -> None:
    """PPV and NPV at the prevalence the user expects, one row per run."""
    st.subheader("Predictive values at the prevalence you expect")
    p1, p2 = st.columns([1, 2])
    target = p1.selectbox("Positive class", runs[0].classes, key="ev_pos", persist_state="session")
    prevalence = p2.slider("Prevalence in the population of interest", 0.001, 0.999, 0.05, 0.001,
                           format="%.3f", key="ev_prev", persist_state="session")
    number = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(predictive_values_table(runs, threshold, target, prevalence), hide_index=True,
                 column_config={c: number for c in ("Sensitivity", "Specificity", "PPV", "NPV")})
    st.caption("Sensitivity and specificity: 95 % Wilson intervals on the test films (counted "
               "as independent); PPV and NPV: the interval they imply at this prevalence.")


def _grid_caption(row) -> str:
    """``✓ true → predicted (score)``; an error orange and bold. Class names are folder names:
    shown as they are (:func:`md_literal`)."""
    said = f"{md_literal(row.true)} → {md_literal(row.predicted)}"
    if row.correct:
        return f"✓ {said} (score {row.confidence:.2f})"
    return f":orange[**✗ {said}** (score {row.confidence:.2f})]"


def sample_grid(runs: list, run, threshold: float | None) -> None:
    """A run's test films, most confident errors first, with a link to review one and the
    run's downloads."""
    records = sample_records(run, threshold)
    st.markdown(f"Run `{run.id[:8]}`: {int((~records['correct']).sum())} errors of {len(records)}")
    shown = records.head(12)
    image_grid(shown, [_grid_caption(r) for r in shown.itertuples()])
    review_link(run, shown, key=f"ev_review_{run.id}")
    d1, d2, d3 = st.columns(3)
    d1.download_button("Predictions (CSV)", download_csv(test_predictions(run)),
                       f"predictions-{run.id}.csv", "text/csv", key=f"dl_p_{run.id}")
    d2.download_button("Classification report (CSV)",
                       download_csv(report_table(evaluation(run, threshold)["eval"])),
                       f"report-{run.id}.csv", "text/csv", key=f"dl_r_{run.id}")
    # read when clicked: the model's megabytes were hashed and kept per session on every rerun
    d3.download_button("Model (best.keras)", lambda: model_file(run), f"{run.id}.keras",
                       "application/octet-stream", key=f"dl_m_{run.id}",
                       help="Loads in plain Keras: keras.models.load_model(path). "
                            "`python -m cxrlib export` writes a SavedModel or TFLite file.")
