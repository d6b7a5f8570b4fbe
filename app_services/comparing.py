"""Comparison services: is the difference between two runs real? (McNemar, paired bootstrap)."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib import evaluation as ev

from .core import fmt
from .runs import get_run, run_stamp


@st.cache_data(max_entries=16, show_spinner="Comparing the runs film by film…")
def _comparison(stamp_a: str, stamp_b: str, run_a: str, run_b: str, n_boot: int,
                threshold: float | None) -> dict[str, Any]:
    try:
        return ev.compare_runs(get_run(run_a), get_run(run_b), n_boot=n_boot, seed=0,
                               threshold=threshold)
    except ev.NotComparable as exc:
        return {"refused": exc.reason}


def comparison(run_a, run_b, n_boot: int = 1000, threshold: float | None = None) -> dict[str, Any]:
    """:func:`cxrlib.evaluation.compare_runs` of two runs (cached on both runs' artefacts);
    ``{"refused": reason}`` when they were not tested on the same films."""
    return _comparison(run_stamp(run_a), run_stamp(run_b), run_a.id, run_b.id, n_boot, threshold)


def difference_table(result: dict[str, Any]):
    """Per metric: run A, run B, B − A and its paired-bootstrap CI."""
    import pandas as pd

    rows = [{"metric": name, "run A": m["a"], "run B": m["b"], "B − A": m["difference"],
             "low": m["low"], "high": m["high"]}
            for name, m in result["bootstrap"]["metrics"].items()]
    return pd.DataFrame(rows)


def mcnemar_table(result: dict[str, Any]):
    """The paired correct / wrong table (rows: run A, columns: run B)."""
    import pandas as pd

    mc = result["mcnemar"]
    return pd.DataFrame({"B correct": [mc["both_correct"], mc["only_b_correct"]],
                         "B wrong": [mc["only_a_correct"], mc["both_wrong"]]},
                        index=["A correct", "A wrong"])


def comparison_ui(run_a, run_b, threshold: float | None = None) -> None:
    """The Evaluation page's section on two runs: is their difference real, or why they cannot
    be compared."""
    st.subheader("Is the difference real?")
    a, b = f"A `{run_a.id[:8]}`", f"B `{run_b.id[:8]}`"
    result = comparison(run_a, run_b, 1000, threshold)
    if "refused" in result:
        st.warning(f"Runs {a} and {b} cannot be compared film by film: {result['refused']}. "
                   "Compare runs trained on the same data with the same split.",
                   icon=":material/block:")
        return
    acc, auc = (result["bootstrap"]["metrics"][k] for k in ("accuracy", "auc/macro"))
    real = acc["low"] is not None and (acc["low"] > 0 or acc["high"] < 0)
    (st.success if real else st.info)(result["verdict"])
    m = st.columns(4)
    m[0].metric("McNemar p (exact)", fmt(result["mcnemar"]["p_value"], ".3g"),
                help="Exact binomial test on the films only one run gets right")
    m[1].metric("Accuracy B − A", fmt(acc["difference"], "+.3f"),
                help=f"95 % CI {fmt(acc['low'], '+.3f')} to {fmt(acc['high'], '+.3f')}")
    m[2].metric("Macro-AUC B − A", fmt(auc["difference"], "+.3f"),
                help=f"95 % CI {fmt(auc['low'], '+.3f')} to {fmt(auc['high'], '+.3f')}")
    m[3].metric("Films only one run gets right", f"{result['mcnemar']['discordant']}")
    boot = result["bootstrap"]
    st.caption(f"Run A is {run_a.id[:8]}, run B is {run_b.id[:8]}; {result['n']} common test "
               f"films. Paired 95 % CIs from {boot['n_boot']} {boot['unit']}-level bootstrap "
               f"resamples ({boot['n_units']} {boot['unit']}s), both runs scored on the same "
               "resamples. A CI that excludes 0 is a difference beyond chance.")
    left, right = st.columns([1, 2])
    left.dataframe(mcnemar_table(result))
    number = st.column_config.NumberColumn(format="%.3f")
    right.dataframe(difference_table(result), hide_index=True,
                    column_config={c: number for c in ("run A", "run B", "B − A", "low", "high")})
