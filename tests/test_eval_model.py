"""actfusion-eval: every output file, metrics equal to ``python -m actfusion_training.evaluate`` on the written files,
and the inference pieces (post-processing, upsampling, LTA layouts, uncovered frames)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from actfusion_model.checkpoint import load_checkpoint, save_checkpoint
from actfusion_model.config import experiment_config
from actfusion_model.network import ActFusion
from actfusion_training.eval_model import MISSING_NAME, main as eval_main
from actfusion_training.evaluate import main as evaluate_main
from actfusion_training.inference import (
    NO_PREDICTION,
    lta_layout,
    postprocess,
    predict_lta,
    predict_tas,
    upsample_nearest,
)
from actfusion_training.metrics import moc_scores
from actfusion_training.scoring import ALPHAS, BETAS
from tests.test_train import TEST_VIDEOS, build_dataset, run, write_config
from tests.torch_threads import one_torch_thread

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LTA_DIRS = [f"lta_{p}_a{a:g}" for p in ("gt", "rn") for a in ALPHAS]


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(shared_data, tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def checkpoint(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short training run (sample rate 3, median filter 5 recorded in the checkpoint)."""
    root = tmp_path_factory.mktemp("run")
    cfg = write_config(root / "c.yaml", epochs=2, accumulate=1, eval_every=100, checkpoint_every=100,
                       validation_fraction=0.0, median_filter=5)
    with one_torch_thread():
        assert run(cfg, data, root / "run") == "finished"
    return root / "run" / "last.pt"


@pytest.fixture(scope="module")
def evaluated(checkpoint: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "out"
    with one_torch_thread():
        rc = eval_main(["--checkpoint", str(checkpoint), "--data-root", str(data), "--split", "1", "--out", str(out),
                        "--steps", "4", "--seed", "3", "--max-plots", "1"])
    assert rc == 0
    return out


def evaluate_cli(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    capsys.readouterr()
    assert evaluate_main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_writes_every_file(evaluated: Path, data: Path):
    for sub in ["tas", *LTA_DIRS]:
        files = sorted(p.stem for p in (evaluated / sub).glob("*.txt"))
        assert files == sorted(TEST_VIDEOS), sub
        for video in TEST_VIDEOS:
            pred = (evaluated / sub / f"{video}.txt").read_text().splitlines()
            gt = (data / "groundTruth" / f"{video}.txt").read_text().splitlines()
            assert len(pred) == len(gt), (sub, video)  # raw frame rate, full video
            assert MISSING_NAME not in pred  # r = 4 covers the whole evaluated window at alpha 0.2 and 0.3
    results = json.loads((evaluated / "results.json").read_text())
    assert results["steps"] == 4 and results["seed"] == 3 and results["median_filter"] == 5  # from the checkpoint
    assert results["sample_rate"] == 3 and results["offsets"] == "all" and results["videos"] == 2
    assert set(results["latency_s"]) == {"tas_per_video", "lta_gt_per_forecast", "lta_gt_per_video",
                                         "lta_rn_per_forecast", "lta_rn_per_video"}
    assert all(v > 0 for v in results["latency_s"].values())
    md = (evaluated / "results.md").read_text()
    assert "| Acc | Edit |" in md and "r*N^O" in md and "GT length" in md
    png = evaluated / "plots" / f"{TEST_VIDEOS[0]}.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    img = imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 500
    assert not (evaluated / "plots" / f"{TEST_VIDEOS[1]}.png").exists()  # --max-plots 1


def test_eval_metrics_equal_the_evaluation_cli(evaluated: Path, data: Path, capsys: pytest.CaptureFixture):
    results = json.loads((evaluated / "results.json").read_text())
    gt_dir = str(data / "groundTruth")
    tas = evaluate_cli(capsys, "tas", "--predictions", str(evaluated / "tas"), "--ground-truth", gt_dir)
    for key in ("acc", "edit", "f1@10", "f1@25", "f1@50"):
        assert tas[key] == pytest.approx(results["tas"][key], abs=1e-9), key
    for protocol in ("gt", "rn"):
        for alpha in ALPHAS:
            lta = evaluate_cli(capsys, "lta", "--predictions", str(evaluated / f"lta_{protocol}_a{alpha:g}"),
                               "--ground-truth", gt_dir, "--observed", str(alpha), "--predicted",
                               *[str(b) for b in BETAS])
            mine = results["lta"][protocol][f"{alpha:g}"]
            assert lta["moc"].keys() == mine.keys()
            for beta, value in lta["moc"].items():
                assert value == pytest.approx(mine[beta], abs=1e-9), (protocol, alpha, beta)


def test_eval_is_deterministic_and_tas_only(evaluated: Path, checkpoint: Path, data: Path, tmp_path: Path):
    out = tmp_path / "tas_only"
    assert eval_main(["--checkpoint", str(checkpoint), "--data-root", str(data), "--split", "1", "--out", str(out),
                      "--steps", "4", "--seed", "3", "--no-lta", "--max-plots", "0", "--max-videos", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md", "tas"]
    video = TEST_VIDEOS[0]
    assert (out / "tas" / f"{video}.txt").read_text() == (evaluated / "tas" / f"{video}.txt").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["lta"] == {} and results["videos"] == 1


def test_eval_exact_f1_flag(evaluated: Path, checkpoint: Path, data: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture):
    """``--exact-f1`` scores F1 with the exact last-segment end, like ``actfusion_training.evaluate tas --exact-f1``."""
    default = json.loads((evaluated / "results.json").read_text())
    assert default["f1_segment_ends"] == "reference"
    out = tmp_path / "exact"
    assert eval_main(["--checkpoint", str(checkpoint), "--data-root", str(data), "--split", "1", "--out", str(out),
                      "--steps", "4", "--seed", "3", "--no-lta", "--max-plots", "0", "--exact-f1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["f1_segment_ends"] == "exact"
    assert results["tas"]["acc"] == default["tas"]["acc"] and results["tas"]["edit"] == default["tas"]["edit"]
    gt_dir = str(data / "groundTruth")
    for flag, res in (((), default), (("--exact-f1",), results)):
        tas = evaluate_cli(capsys, "tas", "--predictions", str(evaluated / "tas" if not flag else out / "tas"),
                           "--ground-truth", gt_dir, *flag)
        for key in ("f1@10", "f1@25", "f1@50"):
            assert tas[key] == pytest.approx(res["tas"][key], abs=1e-9), (flag, key)


def test_eval_reports_the_label_only_baselines(evaluated: Path, checkpoint: Path, data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture):
    results = json.loads((evaluated / "results.json").read_text())
    names = ["repeat_last_observed", "grammar_order1", "grammar_order2"]
    assert list(results["baselines"]) == names
    assert results["baseline_fit"]["train_videos"] == len((data / "splits" / "train.split1.bundle").read_text().split())
    cells = [(p, f"{a:g}", f"{b:g}") for p in ("gt", "rn") for a in ALPHAS for b in BETAS]
    for name in names:
        table = results["baselines"][name]["lta"]
        assert all(table[p][a][b] is not None for p, a, b in cells)
        for p in ("gt", "rn"):
            values = [table[p][a][b] for q, a, b in cells if q == p]
            assert results["baselines"][name]["lta_mean"][p] == pytest.approx(float(np.mean(values)))
    everyone = {"model": results["lta"], **{n: results["baselines"][n]["lta"] for n in names}}
    for p, a, b in cells:  # the best of each cell really has the highest MoC
        best = results["best_per_cell"][p][a][b]
        assert everyone[best][p][a][b] == max(t[p][a][b] for t in everyone.values())
    # Scored by the same code: the evaluation CLI on the written baseline files gives the same MoC.
    lta = evaluate_cli(capsys, "lta", "--predictions", str(evaluated / "baselines" / "grammar_order2" / "lta_gt_a0.3"),
                       "--ground-truth", str(data / "groundTruth"), "--observed", "0.3", "--predicted",
                       *[str(b) for b in BETAS])
    assert lta["moc"] == pytest.approx(results["baselines"]["grammar_order2"]["lta"]["gt"]["0.3"])
    md = (evaluated / "results.md").read_text()
    for heading in ("## Label-only baselines", "grammar order1, MoC (%):", "grammar order2, MoC (%):",
                    "repeat last observed, MoC (%):", "Mean MoC (%):", "Best MoC per cell:"):
        assert heading in md, heading

    out = tmp_path / "no_baselines"
    assert eval_main(["--checkpoint", str(checkpoint), "--data-root", str(data), "--split", "1", "--out", str(out),
                      "--steps", "2", "--single-offset", "--max-plots", "0", "--max-videos", "1",
                      "--no-baselines"]) == 0
    assert "baselines" not in json.loads((out / "results.json").read_text())
    assert not (out / "baselines").exists() and "Label-only baselines" not in (out / "results.md").read_text()


def test_eval_errors(checkpoint: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    ckpt = load_checkpoint(checkpoint)
    renamed = tmp_path / "renamed.pt"
    save_checkpoint(renamed, ckpt.model, [f"c{i}" for i in range(11)])
    rc = eval_main(["--checkpoint", str(renamed), "--data-root", str(data), "--split", "1",
                    "--out", str(tmp_path / "o")])
    assert rc == 1 and "class mapping" in capsys.readouterr().err
    rc = eval_main(["--checkpoint", str(tmp_path / "missing.pt"), "--data-root", str(data), "--split", "1",
                    "--out", str(tmp_path / "o")])
    assert rc == 1 and "not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- inference parts


def test_postprocess_median_filter_and_upsampling():
    probs = np.zeros((2, 9))
    probs[0] = 1.0
    probs[:, 4] = [0.0, 1.0]  # a one-frame spike of class 1
    assert postprocess(probs, 0).tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert postprocess(probs, 3).tolist() == [0] * 9
    assert upsample_nearest(np.array([5, 6, 7]), 4, 10).tolist() == [5, 5, 5, 5, 6, 6, 6, 6, 7, 7]
    assert upsample_nearest(np.array([5, 6]), 4, 10).tolist() == [5] * 4 + [6] * 6  # clipped at the end
    assert upsample_nearest(np.array([1, 2, 3]), 1, 3).tolist() == [1, 2, 3]


def test_lta_layouts():
    assert lta_layout(100, 1, 0.2, "gt") == lta_layout(100, 1, 0.2, "rn")  # 20 observed + 80 either way
    gt, rn = lta_layout(100, 1, 0.3, "gt"), lta_layout(100, 1, 0.3, "rn")
    assert (gt.observed, gt.horizon, rn.horizon) == (30, 70, 120)
    assert lta_layout(15, 1, 0.3, "gt").observed == 4  # round(4.5) = 4: Python's banker's rounding, as the authors
    sub = lta_layout(1001, 8, 0.2, "gt")  # full_len = ceil(1001 / 8) = 126, observed round(25.2) = 25
    assert (sub.full_len, sub.observed, sub.horizon) == (126, 25, 101)
    with pytest.raises(ValueError, match="protocol"):
        lta_layout(10, 1, 0.2, "oracle")


def test_uncovered_forecast_frames_count_as_wrong():
    cfg = experiment_config("tiny", {"model": {"num_classes": 3, "input_dim": 4, "ddim_steps": 2, "sample_rate": 2}})
    torch.manual_seed(0)
    model = ActFusion(cfg.model).eval()
    feats = np.random.default_rng(0).standard_normal((4, 101)).astype(np.float32)
    pred = predict_lta(model, feats, 0.2, "rn", ratio=0.5, steps=2)  # 10 observed + 5 forecast frames (x2 raw)
    assert pred.layout.observed == 10 and pred.layout.horizon == 5
    assert (pred.labels[:30] >= 0).all() and (pred.labels[30:] == NO_PREDICTION).all() and pred.labels.size == 101
    assert pred.observed_raw == 20 and len(pred.forecast_seconds) == 2
    moc, _ = moc_scores([(pred.labels, np.where(pred.labels >= 0, pred.labels, 0))], 0.2, (0.5,))
    assert moc[0.5] < 100.0  # frames 30..69 were not forecast: wrong, not skipped
    tas = predict_tas(model, feats, steps=2, aggregate_offsets=False)
    assert tas.labels.shape == (101,) and tas.probs.shape == (3, 51)
    again = predict_tas(model, feats, steps=2, aggregate_offsets=False)
    assert np.array_equal(tas.labels, again.labels)  # seeded noise: same answer


# ---------------------------------------------------------------------------------------------- K sampled futures


def _tiny_lta_model() -> ActFusion:
    cfg = experiment_config("tiny", {"model": {"num_classes": 3, "input_dim": 4, "ddim_steps": 3, "sample_rate": 2}})
    torch.manual_seed(0)
    return ActFusion(cfg.model).eval()


def test_lta_with_one_sample_is_the_single_forecast_of_before():
    """K = 1 under every consensus = one forecast per offset, averaged, median-filtered, argmax (the old path)."""
    from actfusion_model.runtime import forecast
    from actfusion_training.inference import CONSENSUS_CHOICES, as_backend, noise_generator

    model = _tiny_lta_model()
    feats = np.random.default_rng(1).standard_normal((4, 61)).astype(np.float32)
    layout = lta_layout(61, 2, 0.3, "rn")
    runs = []
    for off in (0, 1):
        out = forecast(as_backend(model), feats[:, off::2][:, :layout.observed], horizon=layout.horizon, steps=3,
                       generator=noise_generator(5, 7, "rn", off, 0.3))
        runs.append(torch.cat([out.observed_probs, out.future_probs], dim=1).numpy())
    shortest = min(r.shape[1] for r in runs)
    ids = postprocess(np.mean([r[:, :shortest] for r in runs], axis=0), 3)
    before = np.full(61, NO_PREDICTION)
    before[:min(61, ids.size * 2)] = upsample_nearest(ids, 2, min(61, ids.size * 2))
    for consensus in CONSENSUS_CHOICES:
        pred = predict_lta(model, feats, 0.3, "rn", seed=5, video_index=7, steps=3, median_filter=3,
                           consensus=consensus)
        assert np.array_equal(pred.labels, before), consensus
        assert pred.num_samples == 1 and pred.next_action.num_samples == 1
        assert len(pred.next_action.alternatives) + pred.next_action.no_change_count == 1  # one sample: one outcome


def test_lta_consensus_of_k_samples_is_seeded_and_reduces_the_samples():
    from actfusion_model.consensus import next_action_distribution
    from actfusion_training.inference import consensus_ids

    model = _tiny_lta_model()
    feats = np.random.default_rng(2).standard_normal((4, 61)).astype(np.float32)
    common = dict(seed=5, video_index=7, steps=3, num_samples=6)
    preds = {c: predict_lta(model, feats, 0.3, "gt", consensus=c, **common) for c in ("mode", "medoid", "mean")}
    again = predict_lta(model, feats, 0.3, "gt", consensus="mode", **common)
    other = predict_lta(model, feats, 0.3, "gt", consensus="mode", **{**common, "seed": 6})
    mode = preds["mode"]
    assert mode.sample_probs.shape == (6, 3, mode.layout.total) and mode.num_samples == 6
    assert np.array_equal(mode.labels, again.labels) and np.array_equal(mode.sample_probs, again.sample_probs)
    assert not np.array_equal(mode.sample_probs, other.sample_probs)  # the seed drives the samples
    labels = mode.sample_probs.argmax(axis=1)
    assert len({tuple(row) for row in labels}) > 1  # the samples differ (a random model, 6 draws)
    for consensus, pred in preds.items():  # the same samples under each consensus, reduced by consensus_ids
        assert np.array_equal(pred.sample_probs, mode.sample_probs)
        ids = consensus_ids(pred.sample_probs, consensus)
        covered = min(61, ids.size * 2)
        assert np.array_equal(pred.labels[:covered], upsample_nearest(ids, 2, covered)), consensus
    medoid = consensus_ids(mode.sample_probs, "medoid")
    assert any(np.array_equal(medoid, row) for row in labels)  # the medoid is one of the samples
    obs = mode.layout.observed
    votes = np.stack([np.bincount(labels[:, t], minlength=3) for t in range(labels.shape[1])])
    assert (votes[np.arange(labels.shape[1]), consensus_ids(mode.sample_probs, "mode")] == votes.max(axis=1)).all()
    expected = next_action_distribution(labels[:, obs:], mode.next_action.current, 3)
    assert mode.next_action == expected and mode.next_action.num_samples == 6


def test_eval_scores_the_next_action_of_k_samples(evaluated: Path, checkpoint: Path, data: Path, tmp_path: Path):
    from actfusion_training.baselines import fit_baselines
    from actfusion_training.data import MsTcnDataset, read_split_labels
    from actfusion_training.prob_metrics import next_action_summary, score_forecaster_next_actions
    from actfusion_training.scoring import ScoringOptions, model_next_action_events, score_model

    one = json.loads((evaluated / "results.json").read_text())  # the default: one sample per forecast
    assert one["num_samples"] == 1 and one["consensus"] == "mode"
    assert set(one["next_action"]) == {"gt", "rn"} and (evaluated / "plots" / "reliability.png").is_file()

    out = tmp_path / "k4"
    assert eval_main(["--checkpoint", str(checkpoint), "--data-root", str(data), "--split", "1", "--out", str(out),
                      "--steps", "2", "--single-offset", "--max-plots", "0", "--num-samples", "4",
                      "--consensus", "medoid", "--seed", "3"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_samples"] == 4 and results["consensus"] == "medoid"
    for protocol in ("gt", "rn"):
        s = results["next_action"][protocol]
        assert {"count", "top1", "top3", "brier", "ece_top", "ece_stated", "reliability", "current_correct"} <= set(s)
        assert s["count"] == 2 * len(ALPHAS) and s["reliability"]["mode"] == "stated"
    # The same numbers from the same prob_metrics code on a rerun of the same forecasts.
    ckpt = load_checkpoint(checkpoint)
    options = ScoringOptions(steps=2, seed=3, aggregate_offsets=False, median_filter=5, num_samples=4,
                             consensus="medoid")
    run_ = score_model(ckpt.model, list(MsTcnDataset(data, 1, "test")), ckpt.class_names, options)
    for protocol, (probs, truth, _) in model_next_action_events(run_.videos, len(ckpt.class_names), options).items():
        assert probs.shape == (2 * len(ALPHAS), len(ckpt.class_names) + 1)
        assert json.loads(json.dumps(next_action_summary(probs, truth))) == {
            k: v for k, v in results["next_action"][protocol].items() if k != "current_correct"}
        assert results["lta"][protocol] == run_.metrics["lta"][protocol]
    # The baselines' next-action scores are those of the existing scorer on the same events.
    mapping = MsTcnDataset(data, 1, "test").mapping
    train = read_split_labels(data, 1, "train", mapping)
    videos = [(v.name, v.labels) for v in run_.videos]
    for f in fit_baselines(train.values(), 3):
        expected = score_forecaster_next_actions(f, videos, mapping.num_classes, 3)
        for protocol, s in expected.items():
            got = results["baseline_next_action"][f.name][protocol]
            assert got["top1"] == pytest.approx(s.topk[1]) and got["brier"] == pytest.approx(s.brier)
            assert got["ece_top"] == pytest.approx(s.reliability.ece)
    md = (out / "results.md").read_text()
    assert "## Next action after the current one (4 sampled futures" in md and "| grammar order1 |" in md
    assert "Reliability of the model's stated next-action probabilities" in md
    assert (out / "plots" / "reliability.png").read_bytes()[:8] == PNG_SIGNATURE


def test_sampling_options_are_checked():
    from actfusion_training.scoring import ScoringOptions

    with pytest.raises(ValueError, match="num_samples"):
        ScoringOptions(num_samples=0)
    with pytest.raises(ValueError, match="consensus"):
        ScoringOptions(consensus="vote")
    with pytest.raises(SystemExit):
        eval_main(["--checkpoint", "x", "--data-root", "y", "--split", "1", "--out", "z", "--consensus", "vote"])
    assert eval_main(["--checkpoint", "x", "--data-root", "y", "--split", "1", "--out", "z", "--num-samples", "0"]) == 2


def test_bench_consensus_on_a_tiny_checkpoint(checkpoint: Path, data: Path, tmp_path: Path):
    """benchmarks/bench_consensus.py: its largest K equals actfusion-eval --num-samples K (same seed, same code)."""
    from benchmarks.bench_consensus import main as bench_main

    out = tmp_path / "bench"
    assert bench_main(["--checkpoint", str(checkpoint), "--data-root", str(data), "--samples", "1", "3",
                       "--consensus", "mode", "medoid", "--steps", "2", "--single-offset", "--seed", "3",
                       "--out", str(out)]) == 0
    bench = json.loads((out / "consensus.json").read_text())
    rows = bench["runs"]["2"]["moc"]
    assert [(r["consensus"], r["k"]) for r in rows] == [("mode", 1), ("mode", 3), ("medoid", 3)]
    evaluated_k3 = tmp_path / "eval_k3"
    assert eval_main(["--checkpoint", str(checkpoint), "--data-root", str(data), "--split", "1", "--out",
                      str(evaluated_k3), "--steps", "2", "--single-offset", "--max-plots", "0", "--num-samples", "3",
                      "--consensus", "medoid", "--seed", "3"]) == 0
    results = json.loads((evaluated_k3 / "results.json").read_text())
    assert rows[2]["lta_mean"] == pytest.approx(results["lta_mean"])
    k3 = bench["runs"]["2"]["next_action"][1]
    assert k3["k"] == 3
    for protocol in ("gt", "rn"):
        want = {k: v for k, v in results["next_action"][protocol].items() if k != "current_correct"}
        assert k3[protocol] == want  # the same events and prob_metrics code: the same numbers
    assert bench["baselines"] == results["baseline_next_action"]
    md = (out / "consensus.md").read_text()
    assert "| 2 | medoid | 3 |" in md and "| - | grammar order1 | - |" in md
    assert (out / "reliability.png").read_bytes()[:8] == PNG_SIGNATURE
