"""The demo and the DDS test helpers honour ROS_DOMAIN_ID and keep their pid-derived pick without it."""
from __future__ import annotations

import os

import pytest

from actfusion_ros.testing.ros_harness import loopback_env, unique_domain_id
from actfusion_ros.tools.demo import demo_domain_id, main as demo_main
from actfusion_ros.tools.ros_domain import domain_id


def test_domain_id_from_the_environment_or_the_fallback() -> None:
    assert domain_id(77, {}) == 77
    assert domain_id(77, {"ROS_DOMAIN_ID": ""}) == 77
    assert domain_id(77, {"ROS_DOMAIN_ID": " 5 "}) == 5
    assert domain_id(77, {"ROS_DOMAIN_ID": "0"}) == 0
    with pytest.raises(ValueError, match=r"ROS_DOMAIN_ID='x1' is not an integer"):
        domain_id(77, {"ROS_DOMAIN_ID": "x1"})
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID=233 is out of range 0..232"):
        domain_id(77, {"ROS_DOMAIN_ID": "233"})


def test_demo_and_test_helpers_honour_ros_domain_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    assert demo_domain_id() == 42
    assert unique_domain_id() == 42
    assert loopback_env(unique_domain_id())["ROS_DOMAIN_ID"] == "42"


def test_pid_derived_fallback_without_ros_domain_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    assert demo_domain_id() == 150 + os.getpid() % 60
    assert unique_domain_id() == 20 + os.getpid() % 200


def test_demo_refuses_a_bad_ros_domain_id(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("ROS_DOMAIN_ID", "lots")
    assert demo_main(["--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ROS_DOMAIN_ID='lots'" in err
    assert not (tmp_path / "w").exists()
