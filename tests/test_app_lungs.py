"""The lungs in the app: Explain's lung-outline toggle and in-lung share, the predicted mask over
the Preprocessing preview, and the lung-crop step on the Preprocessing and Training pages."""
from __future__ import annotations

import cv2
import numpy as np
from app_fixtures import app, app_workspace, metric, texts, trained_run, viewer  # noqa: F401

from cxrlib import preprocessing as preprocess
from cxrlib.lungs import segment_lungs
from cxrlib.lungs.network import asset_digest

EXPLAIN, PREPROCESSING, TRAINING = "views/explain.py", "views/preprocessing.py", "views/training.py"


def _share_by_hand(run, path: str) -> tuple[float, bool]:
    """The film's map share (the page's default method) inside its predicted lung field, and
    whether that is flagged (the tiny run's model input is the 96 px film itself: no carrying)."""
    from cxrlib.core.config import ExplainConfig
    from cxrlib.explain import get_cam

    raw = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    seg = segment_lungs(raw)
    x = preprocess.to_model_input(preprocess.preprocess_film(raw, run.config.preprocess)[None])
    heat = np.clip(get_cam(ExplainConfig().method, run.load_model())(x)[0][0], 0, None)
    return float(heat[seg.mask].sum() / heat.sum()), seg.flagged


def test_explain_shows_the_in_lung_share_and_a_lung_outline_toggle(app, trained_run):
    at = app(EXPLAIN)
    preds = trained_run.predictions().set_index("rel_path")
    film = at.selectbox(key="ex_film_Test").value
    share, flagged = _share_by_hand(trained_run, preds.loc[film, "path"])
    assert metric(at, "CAM inside the lungs") == f"{share:.0%}"
    warned = any("lung mask of this film is flagged" in w for w in texts(at.warning))
    assert warned == flagged
    toggle = at.toggle(key="ex_lungs")
    assert toggle.label == "Lung outline" and toggle.value is False
    film = viewer(at)["film"]
    toggle.set_value(True).run()
    assert viewer(at)["film"] != film  # the outline is drawn on the film
    assert any(c.endswith("· lung outline (predicted mask)") for c in texts(at.caption))
    # a film whose predicted mask is flagged says so (the synthetic COVID-19 films are)
    shown = {}
    for rel in preds.query("split == 'test'").index:
        share, flagged = _share_by_hand(trained_run, preds.loc[rel, "path"])
        if flagged:
            at.selectbox(key="ex_film_Test").set_value(rel).run()
            shown = {"share": metric(at, "CAM inside the lungs"), "expected": f"{share:.0%}",
                     "warned": any("flagged as poor" in w for w in texts(at.warning))}
            break
    assert shown and shown["warned"] and shown["share"] == shown["expected"]


def test_preprocessing_shows_the_predicted_mask_and_offers_the_lung_crop(app, synthetic_dataset):
    at = app(PREPROCESSING)
    assert at.toggle(key="pp_lungs").value is True
    film = at.selectbox(key="pp_film").value
    seg = segment_lungs(cv2.imread(str(synthetic_dataset / film), cv2.IMREAD_GRAYSCALE))
    assert f"Green: the predicted lung mask (quality {seg.quality:.2f})." in texts(at.caption)
    after = [i for i in at.image if i.captions[0].startswith("Preprocessed")][0].value[0]
    at.toggle(key="pp_lungs").set_value(False).run()
    assert [i for i in at.image if i.captions[0].startswith("Preprocessed")][0].value[0] != after
    assert not [c for c in texts(at.caption) if c.startswith("Green:")]
    assert at.slider(key="pp_margin").disabled
    at.multiselect(key="pp_steps").set_value(["lung_crop", "white_balance"]).run()
    assert not at.slider(key="pp_margin").disabled and at.slider(key="pp_margin").value == 0.05
    captions = [c for i in at.image for c in i.captions]
    assert "Preprocessed: white balance 0.05 % → lung crop + 5% → 224 px" in captions


def test_preview_service_crops_the_film_and_its_mask_alike(synthetic_dataset):
    import app_services as svc

    path = str(next((synthetic_dataset / "Normal").glob("*.png")))
    raw = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    cfg = svc.PreprocessConfig(steps=("lung_crop",), lung_model=asset_digest())
    view = svc.preprocess_preview(path, cfg)
    seg = segment_lungs(raw)
    x0, y0, x1, y1 = preprocess.input_box(raw, cfg, seg)
    assert np.array_equal(view["after"], raw[y0:y1, x0:x1])  # no other step: the crop itself
    assert np.array_equal(view["lungs"], seg.mask[y0:y1, x0:x1])
    assert view["lungs_quality"] == seg.quality


def test_training_page_lung_crop_is_a_new_run(app, trained_run):
    at = app(TRAINING)
    at.selectbox(key="tr_family").set_value("tiny").run()
    at.number_input(key="tr_epochs_tiny").set_value(5)
    at.select_slider(key="tr_lr").set_value(1e-2).run()
    assert any(s.startswith(f"Already trained: this exact configuration is cached as run "
                            f"`{trained_run.id}`") for s in texts(at.success))
    crop = [t for t in at.toggle if t.label == "Crop to the lungs before the resize"]
    assert len(crop) == 1 and crop[0].value is False
    crop[0].set_value(True).run()
    assert "Not trained yet on this dataset." in texts(at.caption)
    assert not any(s.startswith("Already trained") for s in texts(at.success))
