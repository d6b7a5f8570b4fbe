"""The Audit page's "what the search found": the workspace's sweeps on this dataset, each
remedy's leave-one-source-out gain over the baseline with its paired bootstrap interval
(:func:`cxrlib.sweep.gains.sweep_findings`), and the populations no candidate reached."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from cxrlib.core.fsutil import read_json
from cxrlib.sweep import study
from cxrlib.sweep.gains import FLOOR, sweep_findings


def dataset_sweeps(fingerprint: str) -> list[str]:
    """Finished sweeps of the workspace on the dataset with ``fingerprint``, newest first."""
    out = []
    for name in study.list_sweeps():
        spec = read_json(study.sweep_folder(name) / "spec.json", default={}) or {}
        if spec.get("fingerprint") == fingerprint and study.sweep_result(name):
            out.append(name)
    return out


@st.cache_data(max_entries=8, show_spinner="Bootstrapping the LOSO gains…")
def _findings(name: str, stamp: float) -> dict:
    result = study.sweep_result(name) or {}
    found = sweep_findings(result, lambda run_id: study.loso_films(name, run_id))
    found["result"] = {k: v for k, v in result.items() if k != "candidates"}
    return found


def search_findings(name: str) -> dict:
    """:func:`cxrlib.sweep.gains.sweep_findings` of sweep ``name`` (cached per result.json)."""
    path = study.sweep_folder(name) / "result.json"
    return _findings(name, path.stat().st_mtime if path.exists() else 0.0)


def findings_table(found: dict) -> pd.DataFrame:
    """One row per candidate: LOSO, its gain over the baseline with the 95 % interval, and
    whether the interval excludes 0."""
    verdict = {"up": "raised LOSO", "down": "lowered LOSO", None: "no clear change"}
    return pd.DataFrame([{"candidate": r["name"], "LOSO expected accuracy": r["loso"],
                          "gain over baseline": r["gain"], "95 % CI low": r["low"],
                          "95 % CI high": r["high"], "verdict": verdict[r["moved"]],
                          "chosen": r["selected"]} for r in found["rows"]])


def findings_sentences(found: dict) -> list[str]:
    """What the search found, in plain sentences (no figure without its interval)."""
    base = found.get("baseline") or {}
    moved = [r for r in found["rows"] if r["moved"] == "up"]
    flat = [r for r in found["rows"] if r["moved"] is None]
    out = [f"Baseline LOSO expected accuracy {_n(base.get('loso_expected_accuracy'))}."]
    if moved:
        best = moved[0]
        out.append(f"{len(moved)} candidate(s) raised it beyond chance; the largest gain: "
                   f"**{best['name']}**, {best['gain']:+.3f} (95 % CI {best['low']:+.3f} to "
                   f"{best['high']:+.3f}).")
    else:
        out.append("No candidate raised it by more than the bootstrap's noise: the remedies "
                   "searched do not make this model generalise to an unseen source.")
    if flat:
        out.append("No clear change: " + ", ".join(r["name"] for r in flat) + ".")
    for gap in found.get("lacking") or []:
        held = " and ".join(gap["classes"]) or "its classes"
        out.append(f"**Missing from the data:** with **{gap['source']}** held out (it holds "
                   f"{held}), no candidate scored above {FLOOR:.1f} (best {gap['best']:.3f}). "
                   "No other source holds films like these, so no setting can learn them: "
                   "that population has to be added to the training data.")
    return out


def search_findings_section(ds) -> None:
    """Draw what the workspace's sweeps found on this dataset (the newest, or a choice)."""
    st.markdown("**What the search found** (a sweep of remedies chosen by leave-one-source-out)")
    names = dataset_sweeps(ds.fingerprint)
    if not names:
        st.caption("No finished sweep on this dataset in this workspace: the Training page's "
                   "Sweeps section searches the remedies.")
        return
    name = st.selectbox("Sweep", names, key="au_sweep") if len(names) > 1 else names[0]
    found = search_findings(name)
    if not found["rows"]:
        st.caption(f"Sweep {name} has no baseline candidate with stored per-film LOSO "
                   "predictions, so its gains cannot be bootstrapped.")
        return
    res = found["result"]
    st.caption(f"Sweep **{name}**: selection rule {res.get('selection')}, chosen "
               f"{res.get('chosen_name')} (test accuracy {_n(res.get('chosen_test_accuracy'))}, the "
               "only test split the sweep read). Gains: paired bootstrap over the split's groups "
               "within each source; the interval is about these films, not about new hospitals.")
    for line in findings_sentences(found):
        st.markdown(line)
    st.dataframe(findings_table(found), hide_index=True)


def _n(value) -> str:
    return "-" if value is None else f"{value:.3f}"
