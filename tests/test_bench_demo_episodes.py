"""Mechanics of benchmarks/bench_demo_episodes.py: it prints every episode's scores as well as the means, and
removes its temporary folder unless --work is given (issue 18). The replay itself is replaced by a stand-in
that writes a replay.json; no figure of the real model is asserted."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

SCORES = {1000: {"model": 60.0, "repeat_last_observed": 40.0}, 1001: {"model": 30.0, "repeat_last_observed": 50.0}}


@pytest.fixture
def bench(monkeypatch, tmp_path):
    from benchmarks import bench_demo_episodes

    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(suffix=None, prefix=None, dir=None):   # TemporaryDirectory makes its folder so: record where
        path = real_mkdtemp(suffix, prefix, str(tmp_path))
        made.append(Path(path))
        return path

    def write_bag(world, episode, path):
        path.mkdir(parents=True)
        (path / "episode.mcap").write_bytes(b"x" * 1000)
        return path

    def replay(argv):
        out = Path(argv[argv.index("--out") + 1])
        seed = int(out.name.removeprefix("replay"))
        out.mkdir(parents=True)
        anticipation = {who: {"moc": moc, "lookahead_accuracy": {"1s": moc + 1, "2s": None, "5s": moc - 1}}
                        for who, moc in SCORES[seed].items()}
        (out / "replay.json").write_text(json.dumps({"anticipation": anticipation}))
        return 0

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(bench_demo_episodes, "write_episode_bag", write_bag)
    monkeypatch.setattr(bench_demo_episodes, "replay_main", replay)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read by the stand-in")
    return bench_demo_episodes, checkpoint, made


def test_prints_each_episode_and_the_means_and_removes_its_temporary_folder(bench, capsys) -> None:
    module, checkpoint, made = bench
    assert module.main(["--checkpoint", str(checkpoint), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "| 1000 | 60.0 / 61.0 / - / 59.0 | 40.0 / 41.0 / - / 39.0 |" in out     # per episode
    assert "| 1001 | 30.0 / 31.0 / - / 29.0 | 50.0 / 51.0 / - / 49.0 |" in out
    assert "| model | 45.0 | 46.0 | - | 44.0 |  |" in out                           # means
    assert "| repeat last observed | 45.0 | 46.0 | - | 44.0 | 1 / 2 |" in out
    assert len(made) == 1 and not made[0].exists()                                 # made, used, removed


def test_keeps_the_work_folder_when_given_and_removes_the_temporary_one_on_failure(bench, tmp_path,
                                                                                   monkeypatch) -> None:
    module, checkpoint, made = bench
    work = tmp_path / "kept"
    assert module.main(["--checkpoint", str(checkpoint), "--episodes", "1", "--work", str(work)]) == 0
    assert made == [] and (work / "replay1000" / "replay.json").is_file() and (work / "bag1000").is_dir()
    monkeypatch.setattr(module, "replay_main", lambda argv: 1)
    assert module.main(["--checkpoint", str(checkpoint), "--episodes", "1"]) == 1
    assert len(made) == 1 and not made[0].exists()
    assert module.main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2
