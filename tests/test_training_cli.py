"""The options shared by the training command-line tools (training/cli.py), and that both tools take them."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from actfusion_training import eval_model, train
from actfusion_training.cli import THREADS_HELP, add_dataset_arguments, add_device_arguments


def _parser(bundle: str = "test", out_help: str = "output directory") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tool")
    add_dataset_arguments(p, bundle=bundle, out_help=out_help)
    add_device_arguments(p)
    return p


def test_dataset_and_device_arguments_parse_and_default() -> None:
    args = _parser().parse_args(["--data-root", "d", "--split", "2", "--out", "o"])
    assert (args.data_root, args.split, args.out, args.device, args.threads) == (Path("d"), 2, Path("o"), "cpu", None)
    args = _parser().parse_args(["--data-root", "d", "--split", "1", "--out", "o", "--device", "cuda:1",
                                 "--threads", "3"])
    assert (args.device, args.threads) == ("cuda:1", 3)


@pytest.mark.parametrize("missing", ["--data-root", "--split", "--out"])
def test_dataset_arguments_are_required(missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = {"--data-root": "d", "--split": "1", "--out": "o"}
    argv.pop(missing)
    with pytest.raises(SystemExit):
        _parser().parse_args([x for kv in argv.items() for x in kv])
    assert missing in capsys.readouterr().err


def test_the_split_help_names_the_bundle() -> None:
    helps = {a.dest: a.help for a in _parser(bundle="train", out_help="run directory")._actions}
    assert helps["split"] == "split number N (train.splitN.bundle)" and helps["out"] == "run directory"
    assert helps["threads"] == THREADS_HELP


@pytest.mark.parametrize("tool,bundle,out_help", [(train, "train", "run directory"),
                                                   (eval_model, "test", "output directory")])
def test_train_and_eval_take_the_shared_options(tool, bundle: str, out_help: str) -> None:
    actions = {a.dest: a for a in tool.build_parser()._actions}
    assert actions["split"].help == f"split number N ({bundle}.splitN.bundle)"
    assert actions["out"].help == out_help
    assert all(actions[d].required for d in ("data_root", "split", "out"))
    assert (actions["device"].default, actions["threads"].default, actions["threads"].help) == ("cpu", None,
                                                                                                THREADS_HELP)
