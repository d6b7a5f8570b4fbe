"""What bench/train.py uses to compare training recipes on the VALIDATION split of finished runs.

A candidate is a finished run plus a test-time augmentation mode (:mod:`cxrlib.models.tta`);
:func:`split_scores` scores it on any side of the run's own split (loss, accuracy, macro AUC
from the one evaluation path). :func:`choose` picks the candidate with the lowest validation
loss; test figures are computed only for the chosen one, after the choice.
"""
from __future__ import annotations

import time

import numpy as np


def split_arrays(run, sides=("val", "test")) -> dict:
    """``{side: (grey uint8 films (N, S, S), class indices (N,))}`` of a finished run's split,
    read from the tensor cache (the run's own preprocessing)."""
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.preprocessing.tensor_cache import load_tensors

    cfg = run.config
    ds = scan_dataset(cfg.data.root, bacterial=cfg.data.bacterial).for_task(cfg.data.task)
    tensors = load_tensors(ds, cfg.preprocess)
    row = {p: i for i, p in enumerate(tensors.rel_paths)}
    table = run.split_table()
    classes = list(run.classes)
    out = {}
    for side in sides:
        part = table[table["split"] == side]
        rows = np.array([row[p] for p in part["rel_path"]], dtype=np.int64)
        out[side] = (np.asarray(tensors.images[np.sort(rows)] if len(rows) else tensors.images[:0]),
                     np.array([classes.index(c) for c in part.set_index("rel_path")
                               .loc[[tensors.rel_paths[i] for i in np.sort(rows)], "label"]]))
    return out


def scores(y: np.ndarray, probs: np.ndarray, classes) -> dict:
    """Cross-entropy, accuracy and macro one-vs-rest AUC (:mod:`cxrlib.evaluation`)."""
    from cxrlib.evaluation import evaluate, point_metrics

    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {"loss": round(float(-np.log(p_true).mean()), 4),
            "accuracy": round(float(point_metrics(y, probs.argmax(1), classes)["accuracy"]), 4),
            "macro_auc": round(float(evaluate(y, probs, classes)["auc"]["macro"]), 4)}


def split_scores(run, modes=("none",), side: str = "val", arrays: dict | None = None) -> dict:
    """``{tta mode: scores on side}`` of a finished run's best model."""
    from cxrlib.models.tta import predict_tta

    arrays = arrays or split_arrays(run, (side,))
    images, y = arrays[side]
    model = run.load_model()
    out = {}
    for mode in modes:
        t0 = time.perf_counter()
        probs = predict_tta(model, images, mode)
        out[mode] = {**scores(y, probs, list(run.classes)), "s": round(time.perf_counter() - t0, 1)}
    return out


def choose(table: dict) -> str:
    """The candidate name of ``{name: {"loss": validation loss, ...}}`` with the lowest loss."""
    return min(table, key=lambda k: table[k]["loss"])


def test_intervals(run) -> dict:
    """95 % patient-level bootstrap intervals of a run's test accuracy and macro AUC, from its
    stored test predictions (1000 resamples, seed 0: the Evaluation page's intervals). A target
    inside the interval is not missed by more than the test split can tell; one above it is."""
    from cxrlib import evaluation as ev

    classes = list(run.classes)
    y, probs, patients = ev.from_predictions(run.test_predictions(), classes)
    ci = ev.bootstrap_ci(y, probs, classes, patients, n_boot=1000, seed=0)["metrics"]
    return {"accuracy_ci95": [round(ci["accuracy"]["low"], 4), round(ci["accuracy"]["high"], 4)],
            "macro_auc_ci95": [round(ci["auc/macro"]["low"], 4), round(ci["auc/macro"]["high"], 4)]}


def binary_figures(run, side_arrays: dict | None = None) -> dict:
    """The binary run's test figures: accuracy, sensitivity (COVID-19 recall), specificity
    (Normal recall), AUC, PPV at 10 % prevalence (Bayes' rule, :func:`cxrlib.evaluation.ppv_npv`)
    and its training time (metrics.json ``seconds``)."""
    from cxrlib.evaluation import ppv_npv

    m = run.metrics()
    sens, spec = m["recall"]["COVID-19"], m["recall"]["Normal"]
    ppv, npv = ppv_npv(sens, spec, 0.10)
    return {"accuracy": round(m["accuracy"], 4), "sensitivity": round(sens, 4),
            "specificity": round(spec, 4), "auc": round(m["macro_auc"], 4),
            "ppv_at_10pct": round(ppv, 4), "npv_at_10pct": round(npv, 4),
            "train_s": m["seconds"], "best_epoch": m.get("best_epoch"),
            "epochs_run": int(len(run.history())), "n_test": m["n_test"], **test_intervals(run)}


def multiworker_check(timeout_s: float = 300) -> dict:
    """Two ``python -m cxrlib train --workers`` processes on 127.0.0.1 (own workspaces) train a
    tiny run; a single-process run of the same config is the reference.

    Returns:
        ``{"ok": both done, both in the chief's ``workers`` rows, histories equal to rtol 1e-4,
        "seconds": wall time of the two-worker run, "max_rel_diff": ...}``.
    """
    import json
    import os
    import socket
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig,
                                    SplitConfig, TrainConfig)
    from cxrlib.data.synthetic import make_synthetic_dataset
    from cxrlib.runs.registry import run_id
    from cxrlib.runs.run import Run

    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-mw-"))
    root = make_synthetic_dataset(tmp / "demo", n_per_class=24, size=96, vary_anatomy=False)
    cfg = RunConfig(data=DataConfig(root=str(root)), preprocess=PreprocessConfig(steps=(), size=48),
                    model=ModelConfig(family="tiny", weights="random", head_units=(32, 16),
                                      head_dropout=(0.0, 0.0)),
                    split=SplitConfig(test_fraction=0.25, val_fraction=0.15, seed=1),
                    train=TrainConfig(mode="finetune", epochs=3, batch_size=8,
                                      learning_rate=3e-4, augment=False, seed=3))
    (tmp / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    workers = ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in socks)
    for s in socks:
        s.close()
    root_dir = Path(__file__).resolve().parent.parent

    def start(workspace: Path, extra: list[str]) -> subprocess.Popen:
        env = dict(os.environ, CXR_WORKSPACE=str(workspace))
        env.pop("TF_CONFIG", None)
        return subprocess.Popen([sys.executable, "-m", "cxrlib", "train", "--config",
                                 str(tmp / "cfg.json"), *extra], cwd=root_dir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def finish(procs: list[subprocess.Popen]) -> list[int | None]:
        """Exit codes within ``timeout_s``; a process still running then is killed (None)."""
        try:
            return [p.wait(timeout=timeout_s) for p in procs]
        except subprocess.TimeoutExpired:
            return [p.poll() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, 9)

    t0 = time.perf_counter()
    codes = finish([start(tmp / f"machine-{k}", ["--workers", workers, "--worker-index", str(k)])
                    for k in range(2)])
    seconds = time.perf_counter() - t0
    finish([start(tmp / "single", [])])
    from cxrlib.data.datasets import scan_dataset

    rid = run_id(cfg, scan_dataset(root).for_task("3class").fingerprint)
    chief, ref = (Run(tmp / w / "models" / "runs" / rid) for w in ("machine-0", "single"))
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]
    try:
        a, b = chief.history()[cols].to_numpy(), ref.history()[cols].to_numpy()
        diff = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))
        took_part = [w["steps"] > 0 for w in chief.raw_status().get("workers", [])] == [True, True]
    except (KeyError, ValueError):
        diff, took_part = float("inf"), False
    ok = codes == [0, 0] and took_part and diff < 1e-4
    return {"ok": bool(ok), "exit_codes": codes, "both_took_part": took_part,
            "max_rel_diff": diff, "seconds": round(seconds, 1)}


def finetune_section(data, fingerprint: str, timed_run, *, head_sizes, finetune_sizes,
                     tta_modes=("none", "shift", "shift_scale")) -> dict:
    """Candidates (head mode and the fine-tune recipe at each size, each with every TTA mode)
    scored on the grouped VALIDATION split; the one with the lowest validation loss is chosen,
    then its test figures are computed, and the same recipe is trained on a random split of the
    same fractions (patients may straddle it) for the leak's share of the published 0.956.
    ``timed_run(cfg, fingerprint) -> (run, seconds)`` trains (or returns) a run."""
    from cxrlib.core.config import DataConfig, PreprocessConfig, RunConfig, SplitConfig, TrainConfig

    base = RunConfig(data=DataConfig(root=str(data), task="3class"),
                     train=TrainConfig(mode="head", epochs=50, learning_rate=1e-3))
    runs, configs = {}, {}
    for kind, sizes in (("head", head_sizes), ("finetune", finetune_sizes)):
        for size in sizes:
            train = base.train if kind == "head" else TrainConfig.finetune_recipe()
            configs[f"{kind}-{size}"] = base.replace(preprocess=PreprocessConfig(size=size), train=train)
            runs[f"{kind}-{size}"], _ = timed_run(configs[f"{kind}-{size}"], fingerprint)
            print(f"trained {kind}-{size}: {runs[f'{kind}-{size}'].metrics()['seconds']:.0f} s", flush=True)
    table = {}
    for name, run in runs.items():
        for mode, s in split_scores(run, tta_modes, "val").items():
            table[f"{name}/tta-{mode}"] = s
    print("candidates on the grouped VALIDATION split (loss / accuracy / macro AUC):", flush=True)
    for name, s in table.items():
        print(f"  {name:28s} {s['loss']:.4f} / {s['accuracy']:.4f} / {s['macro_auc']:.4f}", flush=True)
    chosen = choose(table)
    name, tta = chosen.split("/tta-")
    test = split_scores(runs[name], (tta,), "test")[tta]
    # the run's stored test predictions are its own TTA mode's: intervals only for that one
    ci = test_intervals(runs[name]) if tta == runs[name].config.train.tta else {}
    print(f"chosen {chosen}: TEST accuracy {test['accuracy']:.4f}  macro AUC {test['macro_auc']:.4f}"
          f"  (95 % patient-bootstrap CIs {ci or 'not computed for another TTA mode'})", flush=True)
    seconds = runs[name].metrics()["seconds"]
    head_s = None
    if name.startswith("finetune"):  # the head it starts from is a run of its own (done: a hit)
        from cxrlib.training.engine import head_run_config

        head_s = timed_run(head_run_config(configs[name]), fingerprint)[0].metrics()["seconds"]
    random_cfg = configs[name].replace(split=SplitConfig(kind="random", val_fraction=0.1))
    random_run, _ = timed_run(random_cfg, fingerprint)
    random_test = split_scores(random_run, (tta,), "test")[tta]
    leak = random_run.metrics()["leakage"]
    print(f"same recipe, random split: TEST accuracy {random_test['accuracy']:.4f} "
          f"({leak['groups_on_several_sides']} groups on several sides)", flush=True)
    return {"candidates": table, "chosen_recipe": chosen,
            "chosen_config": configs[name].train.to_dict() | {"tta": tta,
                                                             "size": configs[name].preprocess.size},
            "finetune_accuracy": test["accuracy"], "finetune_macro_auc": test["macro_auc"],
            "finetune_accuracy_ci95": ci.get("accuracy_ci95"),
            "finetune_macro_auc_ci95": ci.get("macro_auc_ci95"),
            "finetune_test_loss": test["loss"], "finetune_s": seconds, "finetune_head_s": head_s,
            "finetune_total_s": seconds + (head_s or 0.0),
            "finetune_random_split_accuracy": random_test["accuracy"],
            "finetune_random_split_macro_auc": random_test["macro_auc"],
            "finetune_random_split_leakage_groups": leak["groups_on_several_sides"]}


def binary_section(data, fingerprint_of, timed_run, *, sizes, augments=(True, False),
                   bn_gap_sizes=(128,), epochs: int = 40, patience: int = 5) -> dict:
    """CLAHE + small CNN, COVID-19 vs Normal: blocks, input size and augmentation (small
    rotations, no flip as in the fine-tune recipe, or none) chosen by validation loss on a random
    split (the project's 70/10/20 fractions; the published split was 80/10/10), then the chosen
    one's test figures there and on the grouped split of the same fractions.

    Candidates: the published blocks at each of ``sizes`` (Adam 1e-3, plateau decay, at most
    ``epochs``), and the ``bn_gap`` blocks (:data:`cxrlib.core.config.CNN_ARCHS`) at each of
    ``bn_gap_sizes`` trained as :meth:`TrainConfig.small_cnn_recipe` (peak 2e-3, 1 epoch of
    warm-up then cosine decay over 20 epochs: under 5 minutes on this CPU); each with and
    without augmentation, early stopping on validation loss (``patience``) everywhere."""
    from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig,
                                    SplitConfig, TrainConfig)

    def cfg(size: int, augment: bool, kind: str, arch: str = "published") -> RunConfig:
        if arch == "bn_gap":  # the recipe's schedule (it was chosen here: one definition)
            train = TrainConfig.small_cnn_recipe(augment=augment, early_stopping=patience)
        else:
            train = TrainConfig(mode="finetune", epochs=epochs, early_stopping=patience,
                                augment=augment, hflip=False)
        return RunConfig(data=DataConfig(root=str(data), task="binary"),
                         preprocess=PreprocessConfig(steps=("clahe",), size=size),
                         model=ModelConfig(family="small_cnn", cnn_arch=arch),
                         split=SplitConfig(kind=kind), train=train)

    fp = fingerprint_of(cfg(sizes[0], True, "random"))
    names = {f"{size}px-{'aug' if aug else 'noaug'}": (size, aug, "published")
             for size in sizes for aug in augments}
    names.update({f"bn_gap-{size}px-{'aug' if aug else 'noaug'}": (size, aug, "bn_gap")
                  for size in bn_gap_sizes for aug in augments})
    runs = {}
    for name, (size, aug, arch) in names.items():
        runs[name] = timed_run(cfg(size, aug, "random", arch), fp)[0]
        print(f"trained small CNN {name}: {runs[name].metrics()['seconds']:.0f} s", flush=True)
    val = {name: split_scores(run, ("none",), "val")["none"] for name, run in runs.items()}
    print("small CNN candidates, random split VALIDATION (loss / accuracy; seconds to train):",
          flush=True)
    for name, s in val.items():
        print(f"  {name:20s} {s['loss']:.4f} / {s['accuracy']:.4f}  "
              f"({runs[name].metrics()['seconds']:.0f} s)", flush=True)
    name = choose(val)
    size, aug, arch = names[name]
    grouped = timed_run(cfg(size, aug, "grouped", arch), fp)[0]
    out = {**binary_figures(runs[name]), "chosen": name, "size": size, "augment": aug,
           "cnn_arch": arch,
           "candidates": {k: {**v, "train_s": runs[k].metrics()["seconds"]} for k, v in val.items()},
           "grouped": binary_figures(grouped)}
    print(f"small CNN {name} TEST random split: {binary_figures(runs[name])}", flush=True)
    print(f"small CNN {name} TEST grouped split: {out['grouped']}", flush=True)
    return out
