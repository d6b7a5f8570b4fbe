"""Review: radiologists' verdicts on a run's test films, and how far they agree."""
import streamlit as st

import app_services as svc

st.title("Review")
st.caption("Say, film by film, whether you agree with the label and with the prediction and where "
           "the heatmap falls. Each review is saved to the workspace's review database at once; "
           "a refresh or a second tab loses nothing.")
ds = svc.require_dataset()
run = svc.require_run()
st.markdown(f"Run **{svc.run_label(run)}**")
reviewer = svc.reviewer_ui("rv")
if reviewer is None:
    if st.query_params.get("film"):
        st.caption(f"Film {svc.md_literal(st.query_params['film'])} is waiting for your review.")
    st.stop()

svc.from_address("blind", "rv_blind", valid=[True, False], cast=lambda v: v != "0")
st.session_state.setdefault("rv_blind", True)  # blinded unless the address or the user says no
blinded = st.toggle("Blinded review (for measuring agreement): the label and the prediction "
                    "show only after you save", key="rv_blind")
svc.to_address("blind", int(blinded))
queue, uses_cam = svc.review_queue(run, blinded=blinded)
reviews = svc.run_reviews(run)
progress = svc.review_progress(queue, reviews, reviewer)
st.progress(progress["mine"] / progress["queue"] if progress["queue"] else 0.0,
            text=f"You have reviewed {progress['mine']} of {progress['queue']} films in the queue "
                 f"· all reviewers: {progress['reviewed']} films, "
                 f"{progress['reviewers']} reviewers")
st.caption("Queue order: a fixed shuffle of the test films (blinded: it does not tell the "
           "model's errors)." if blinded else "Queue order: the errors, most confident first; "
           "then " + ("the correct films whose CAM lies least inside the lungs (from this run's "
                      "audit)." if uses_cam else "the correct films by confidence. (Run the audit "
                      "on the Audit page to put the films whose CAM falls outside the lungs next.)"))
rel_path = svc.film_picker(run, queue, reviews, reviewer, blinded=blinded)
if rel_path is None:
    st.info("This run has no test films to review.")
    st.stop()

row = next(queue[queue["rel_path"].astype(str) == rel_path].itertuples())
svc.film_nav(queue["rel_path"].astype(str).tolist(), "rv_film", on_move=svc.sync_film)
window = svc.window_ui("rv_wl")
try:
    st.caption(svc.review_viewer(run, ds, row, window, blinded=blinded and not
                                 svc.has_reviewed(run, rel_path, reviewer)))
except Exception as exc:  # noqa: BLE001 - a moved or unreadable file: the form still works
    st.error(f"Cannot show this film: {exc}")
seen = not blinded or svc.has_reviewed(run, rel_path, reviewer)
if seen:
    mark = ":green[✓]" if row.correct else ":orange[✗]"
    st.markdown(f"{mark} Labelled **{row.true}**, predicted **{row.predicted}** (model score "
                f"{row.confidence:.2f}, not a calibrated probability)")
svc.review_form(run, rel_path, label=row.true, prediction=row.predicted, ds=ds, key="rv",
                ask_name=False, blinded=blinded)

st.markdown("**Reviews of this film**")
film_table = svc.film_reviews_table(run, rel_path)
if not seen:
    st.caption("Blinded: the reviews of this film show after you have saved yours.")
elif len(film_table):
    st.dataframe(film_table, hide_index=True)
else:
    st.caption("No review of this film yet.")

st.divider()
stats = svc.agreement(run, reviews)
st.subheader("Agreement between reviewers")
overall, pairwise = stats["kappa"]["overall"], stats["kappa"]["pairwise"]
if len(overall):
    st.dataframe(svc.kappa_display(overall), hide_index=True)
    st.markdown("Each pair of reviewers (Cohen's kappa on the films both reviewed)")
    st.dataframe(svc.kappa_display(pairwise), hide_index=True)
    st.caption("Kappa: 1 is perfect agreement, 0 what chance alone gives. Cohen's kappa for two "
               "reviewers, Fleiss' for more; 95 % CIs from 1000 bootstrap resamples of the films. "
               "Each reviewer's latest review of a film counts.")
else:
    st.info("Agreement needs two reviewers on the same film: ask a colleague to review some of "
            "the films you did.", icon=":material/group:")

st.subheader("Agreement with the model")
if len(reviews):
    st.dataframe(svc.model_agreement_display(stats["model"]), hide_index=True)
    st.caption("Share of each reviewer's reviews agreeing with the prediction (95 % Wilson CI) "
               "and with the label; on the films the model got wrong, how often the reviewer "
               "still agreed with the model.")
    st.subheader("Heatmaps on markers, text or devices, or outside the body")
    st.dataframe(svc.off_target_display(stats["off_target"]), hide_index=True)
    st.caption("Per class of the film's label: reviews by where the heatmap falls, and the share "
               "off target: on markers, text, devices or outside the body (95 % Wilson CI).")
else:
    st.caption("No review of this run yet.")
st.download_button("All reviews of this run (CSV)", svc.reviews_csv(reviews),
                   f"reviews-{run.id}.csv", "text/csv", icon=":material/download:",
                   key="rv_download")
