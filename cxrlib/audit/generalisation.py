"""The audit's generalisation steps: subgroups, leave-one-source-out and the source probe.

Will the model work at another hospital? Three answers, each before anyone has external data:

* subgroups of the run's test split (:mod:`cxrlib.evaluation.subgroups`): which films it fails
  on, flagged when a subgroup's whole CI lies below the overall accuracy;
* leave-one-source-out (:mod:`cxrlib.audit.loso`): the expected accuracy at an unseen
  source, next to the test-split accuracy; optionally also with the source-adversarial head;
* the source probe (:mod:`cxrlib.audit.source_probe`): how well the backbone features name
  the source.

Each step that cannot run on a run or dataset (one source only, a model without a frozen
backbone) says why in a note instead of failing the audit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from cxrlib.audit.findings import Finding, finding
from cxrlib.core.config import HEAD_FAMILIES

ADVERSARIAL_WEIGHT = 0.3
"""The gradient-reversal weight the audit measures the source-adversarial head with (on cxr3:
0.3 left the expected accuracy at an unseen source unchanged, 1.0 destroyed the head)."""


@dataclass
class Generalisation:
    """Results of :func:`generalisation_audit` (``None`` where a step did not run).

    Attributes:
        subgroups: test-split :class:`cxrlib.evaluation.subgroups.SubgroupAnalysis`.
        loso: plain-head :class:`cxrlib.audit.loso.LosoResult`.
        loso_adversarial: the same with the source-adversarial head.
        source_probe: :func:`cxrlib.audit.source_probe.source_probe`.
        notes: why a step did not run.
    """

    subgroups: object | None = None
    loso: object | None = None
    loso_adversarial: object | None = None
    source_probe: dict | None = None
    notes: list[str] = field(default_factory=list)


def split_subgroups(run, manifest: pd.DataFrame, *, by=None, n_boot: int = 1000):
    """Subgroups of the run's own test predictions by ``by`` (default: the usual columns)."""
    from cxrlib.evaluation.subgroups import attach_manifest, default_columns, subgroup_analysis  # noqa: PLC0415

    frame = attach_manifest(run.test_predictions(), manifest)
    columns = list(by) if by else default_columns(frame)
    return subgroup_analysis(frame, run.classes, columns, n_boot=n_boot) if columns else None


def generalisation_audit(run, dataset, *, steps=("subgroups", "loso"), adversarial: float = 0.0,
                         progress=None) -> Generalisation:
    """The subgroup, LOSO and source-probe steps of the audit of ``run`` on ``dataset``.

    Args:
        run: a finished :class:`cxrlib.runs.run.Run`.
        dataset: its :class:`cxrlib.data.datasets.Dataset` (task rows).
        steps: any of ``"subgroups"`` and ``"loso"`` (the latter includes the probe).
        adversarial: > 0 also runs LOSO with the source-adversarial head of that weight.
        progress: ``progress(step, done, total)``.
    """
    out = Generalisation()
    if "subgroups" in steps:
        out.subgroups = split_subgroups(run, dataset.manifest)
    if "loso" not in steps:
        return out
    if run.config.model.family not in HEAD_FAMILIES:
        out.notes.append(f"Leave-one-source-out needs a frozen backbone's cached features; the "
                         f"{run.config.model.family} model has none.")
        return out
    from cxrlib.audit.loso import leave_one_source_out, loso_sources, run_features  # noqa: PLC0415
    from cxrlib.audit.source_probe import source_probe  # noqa: PLC0415

    try:
        data = run_features(run, dataset=dataset)
        sources = loso_sources(data.manifest)
    except ValueError as exc:  # one source only, or the data changed since the run
        out.notes.append(f"Leave-one-source-out skipped: {exc}.")
        return out
    usable = (data.manifest["split"] != "excluded").to_numpy()
    out.source_probe = source_probe(data.features[0][usable], sources[usable],
                                    data.manifest["group"][usable], data.manifest["label"][usable])
    note = (lambda name: lambda s, d, n: progress(name, d, n)) if progress else (lambda name: None)
    out.loso = leave_one_source_out(run, data=data, progress=note("leave one source out"))
    if adversarial > 0:
        out.loso_adversarial = leave_one_source_out(run, data=data, adversarial=adversarial,
                                                    progress=note("LOSO, adversarial head"))
    return out


def verdicts(result: Generalisation) -> list[Finding]:
    """The findings of the generalisation steps (:class:`cxrlib.audit.findings.Finding`), most
    important first."""
    found = []
    loso = result.loso
    if loso is not None and loso.expected_accuracy is not None:
        worst = loso.table.sort_values("held_out_accuracy").iloc[0]
        what = (f"{len(loso.table)} sources left out in turn; worst: {worst['source']} held out, "
                f"{worst['held_out_accuracy']:.0%}")
        if loso.test_accuracy is not None and loso.expected_accuracy < loso.test_accuracy - 0.1:
            found.append(finding(True, "loso", (
                f"Accuracy falls from {loso.test_accuracy:.0%} on the test split to about "
                f"{loso.expected_accuracy:.0%} at a source the model never saw ({what}).")))
        else:
            found.append(finding(False, "loso", (
                f"At an unseen source, expect about {loso.expected_accuracy:.0%} accuracy "
                f"(test split {loso.test_accuracy or float('nan'):.0%}; {what}).")))
        adv = result.loso_adversarial
        if adv is not None and adv.expected_accuracy is not None:
            gain = adv.expected_accuracy - loso.expected_accuracy
            found.append(finding(False, "adversarial", (
                f"The source-adversarial head (weight {adv.adversarial:g}) gives "
                f"{adv.expected_accuracy:.0%} at an unseen source ({gain:+.1%} against "
                f"the plain head): {'it helps' if gain >= 0.02 else 'no real gain'}.")))
    probe = result.source_probe
    if probe is not None:
        within = probe.get("within_class_balanced_accuracy")
        extra = "" if within is None else f"; within one class, balanced accuracy {within:.0%}"
        chance = probe["chance_balanced"]
        telling = probe["balanced_accuracy"] >= chance + 0.3 * (1 - chance)
        found.append(finding(telling, "source_probe", (
            f"The backbone features {'tell' if telling else 'say little about'} the "
            f"source: a linear probe names it for {probe['accuracy']:.0%} of films "
            f"(majority source {probe['majority_rate']:.0%}{extra}).")))
    sub = result.subgroups
    if sub is not None and len(sub.table):
        flagged = sub.table[sub.table["flagged"]]
        if len(flagged):
            names = "; ".join(f"{r.column} = {r.value} ({r.accuracy:.0%})" for r in flagged.head(3).itertuples())
            found.append(finding(True, "subgroups", (
                f"{len(flagged)} subgroups score clearly below the overall "
                f"{sub.overall['accuracy']:.0%} (whole 95% CI below it): {names}.")))
    return found + [finding(False, "note", text) for text in result.notes]
