"""The Training page's Sweeps section: search the shortcut remedies over the page's head-mode
configuration and choose by leave-one-source-out (:mod:`cxrlib.sweep`), in the background."""
from __future__ import annotations

import streamlit as st

from cxrlib.core.config import RunConfig
from cxrlib.sweep import study
from cxrlib.sweep.space import REMEDY_SETTINGS, SELECTIONS, SweepSpec, remedy_candidates

_LABELS = {"baseline": "baseline (the configuration above)",
           "acquisition": "acquisition-style augmentation",
           "acquisition+contrast": "acquisition + gamma/contrast",
           "source_balance": "source balancing",
           "nyul": "Nyúl–Udupa intensity standardisation",
           "lung_crop": "lung crop"}


def sweep_spec(cfg: RunConfig, name: str, remedies: list[str], copies: int, selection: str) -> SweepSpec:
    """The sweep of ``remedies`` (each alone) over ``cfg``. Raises ValueError for a bad name."""
    base = cfg.to_dict()
    return SweepSpec(name=name, data=cfg.data.root, selection=selection, base=base,
                     candidates=remedy_candidates(remedies, copies))


def sweeps_ui(cfg: RunConfig) -> None:
    """Start a sweep, follow the running ones, show each finished one's leaderboard."""
    st.subheader("Sweeps: which remedy generalises to an unseen source?")
    if cfg.train.mode != "head":
        st.caption("Sweeps search head-mode runs (leave-one-source-out retrains the head once per "
                   "source on cached features): choose the head mode above to start one.")
    else:
        _start_ui(cfg)
    for name in study.list_sweeps():
        _sweep_view(name)


def _start_ui(cfg: RunConfig) -> None:
    with st.form("sweep_form"):
        left, right = st.columns(2)
        # kept for the session: leaving the page and coming back shows what was submitted
        remedies = left.multiselect("Candidates (each remedy alone)", list(REMEDY_SETTINGS),
                                    default=["baseline", "acquisition", "source_balance"],
                                    format_func=_LABELS.get, key="sw_remedies",
                                    persist_state="session")
        name = right.text_input("Sweep name", value="remedies", key="sw_name",
                                persist_state="session")
        copies = right.number_input("Augmented feature copies", 1, 8, 2, key="sw_copies",
                                    persist_state="session",
                                    help="backbone features of each copy are computed once and cached")
        selection = right.radio("Choose by (declared before anything trains)", SELECTIONS,
                                horizontal=True, key="sw_selection", persist_state="session",
                                help="loso: highest expected accuracy at an unseen source (ties: "
                                     "validation loss); validation: lowest validation loss; auto: "
                                     "loso with at least 3 sources. The test split is read only "
                                     "for the chosen run.")
        go = st.form_submit_button("Start sweep", icon=":material/travel_explore:")
    if go:
        try:
            pid = study.start_background(sweep_spec(cfg, name, remedies, int(copies), selection))
            st.success(f"Sweep **{name}** started in the background (process {pid}).")
        except (ValueError, OSError) as exc:
            st.error(f"Could not start the sweep: {exc}")


def _sweep_view(name: str) -> None:
    status = study.sweep_status(name) or {}
    state = status.get("state", "?")
    with st.expander(f"{name} — {state} ({status.get('done', 0)}/{status.get('total', '?')})",
                     expanded=state == "running"):
        if state == "running":
            st.progress(min(1.0, (status.get("done") or 0) / max(1, status.get("total") or 1)),
                        text=f"{status.get('candidate') or ''}: {status.get('run_message') or status.get('message') or ''}")
            st.button("Cancel sweep", key=f"cancel_sweep_{name}", icon=":material/stop:",
                      on_click=study.request_cancel, args=(name,))
        if status.get("error"):
            st.error(status["error"])
        result = study.sweep_result(name)
        if not result:
            return
        board = study.leaderboard(result["candidates"])
        st.markdown(f"Selection rule **{result['selection']}**; chosen: **{result['chosen_name']}** "
                    f"(run `{result['chosen']}`): test accuracy "
                    f"{_fmt(result['chosen_test_accuracy'])}, macro AUC {_fmt(result['chosen_test_macro_auc'])} "
                    "(the only test split the sweep read).")
        st.dataframe(board, hide_index=True)
        st.plotly_chart(leaderboard_figure(board), key=f"sweep_fig_{name}")
        st.download_button("Leaderboard CSV", board.to_csv(index=False), file_name=f"{name}.csv",
                           mime="text/csv", key=f"sweep_csv_{name}")
        if st.toggle("Show all test figures (not used for the choice)", key=f"sweep_all_{name}"):
            st.dataframe(all_test_figures(result), hide_index=True)


def leaderboard_figure(board):
    """LOSO expected accuracy against validation accuracy, one point per candidate: the
    in-distribution / out-of-distribution trade-off."""
    import plotly.express as px  # noqa: PLC0415

    fig = px.scatter(board, x="val_accuracy", y="loso_expected_accuracy", text="name",
                     color="selected", labels={"val_accuracy": "validation accuracy",
                                               "loso_expected_accuracy": "LOSO expected accuracy"})
    fig.update_traces(textposition="top center")
    return fig


def all_test_figures(result: dict):
    """Every candidate's test figures, on the user's explicit request after the choice."""
    import pandas as pd  # noqa: PLC0415

    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    rows = []
    for r in result["candidates"]:
        m = get_run(r["run_id"]).metrics()
        rows.append({"name": r["name"], "test_accuracy": m.get("accuracy"), "test_macro_auc": m.get("macro_auc"),
                     "selected": r.get("selected", False)})
    return pd.DataFrame(rows)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
