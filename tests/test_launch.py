"""launch/anticipate.launch.py, executed with minimal stand-ins for launch / launch_ros / ament_index.

launch and launch_ros are not installable from PyPI, so this test injects tiny fake modules into
``sys.modules``, runs ``generate_launch_description()`` and checks what it describes: the node
(package, executable, name), the launch arguments, the namespace, the image remap and the parameters
(the package's config/anticipate.yaml by default). It also checks that config/anticipate.yaml names
exactly the parameters the node declares.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from actfusion_ros.node_params import PARAMETER_NAMES, read_params_file

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "anticipate.launch.py"
FAKE_SHARE = "/opt/fake/share/actfusion_ros"


class LaunchConfiguration:
    def __init__(self, name: str, default: Any = None) -> None:
        self.name, self.default = name, default

    def resolve(self, args: dict[str, str]) -> str:
        return args[self.name]


class DeclareLaunchArgument:
    def __init__(self, name: str, default_value: Any = None, description: str = "", **kw: Any) -> None:
        self.name, self.default_value, self.description = name, default_value, description


class LaunchDescription:
    def __init__(self, entities: list[Any] | None = None) -> None:
        self.entities = list(entities or [])


class Node:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class ParameterValue:
    def __init__(self, value: Any, *, value_type: Any = None) -> None:
        self.value, self.value_type = value, value_type


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


@pytest.fixture()
def description(monkeypatch: pytest.MonkeyPatch) -> LaunchDescription:
    packages_asked: list[str] = []

    def get_package_share_directory(name: str) -> str:
        packages_asked.append(name)
        return FAKE_SHARE

    fakes = {
        "launch": _module("launch", LaunchDescription=LaunchDescription),
        "launch.actions": _module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument),
        "launch.substitutions": _module("launch.substitutions", LaunchConfiguration=LaunchConfiguration),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", Node=Node),
        "launch_ros.parameter_descriptions": _module("launch_ros.parameter_descriptions",
                                                     ParameterValue=ParameterValue),
        "ament_index_python": _module("ament_index_python"),
        "ament_index_python.packages": _module("ament_index_python.packages",
                                               get_package_share_directory=get_package_share_directory),
    }
    for name, mod in fakes.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("anticipate_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert packages_asked == ["actfusion_ros"]
    return ld


def _split(ld: LaunchDescription) -> tuple[dict[str, DeclareLaunchArgument], Node]:
    args = {e.name: e for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    nodes = [e for e in ld.entities if isinstance(e, Node)]
    assert len(nodes) == 1, ld.entities
    assert len(args) + len(nodes) == len(ld.entities)
    return args, nodes[0]


def test_launch_arguments(description: LaunchDescription) -> None:
    args, _ = _split(description)
    assert set(args) == {"params_file", "namespace", "image_topic", "use_sim_time", "autostart"}
    assert args["params_file"].default_value == f"{FAKE_SHARE}/config/anticipate.yaml"
    assert args["namespace"].default_value == ""
    assert args["image_topic"].default_value == "/camera/image_raw"
    assert args["use_sim_time"].default_value == "false"
    assert args["autostart"].default_value == "true"
    assert all(a.description for a in args.values())


def test_node_description(description: LaunchDescription) -> None:
    args, node = _split(description)
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == ("actfusion_ros", "actfusion_node", "actfusion_node")
    launch_args = {"params_file": "/p.yaml", "namespace": "/robot1", "image_topic": "/cam/rgb",
                   "use_sim_time": "true", "autostart": "false"}
    assert isinstance(kw["namespace"], LaunchConfiguration)
    assert kw["namespace"].resolve(launch_args) == "/robot1"
    # the node's input 'image' is remapped to the image_topic argument
    [(src, dst)] = kw["remappings"]
    assert src == "image" and dst.resolve(launch_args) == "/cam/rgb"
    params_file, overrides = kw["parameters"]
    assert params_file.resolve(launch_args) == "/p.yaml"
    sim = overrides["use_sim_time"]
    assert isinstance(sim, ParameterValue) and sim.value_type is bool
    assert sim.value.resolve(launch_args) == "true"
    autostart = overrides["autostart"]        # the lifecycle node's autostart parameter
    assert isinstance(autostart, ParameterValue) and autostart.value_type is bool
    assert autostart.value.resolve(launch_args) == "false"
    for name in ("namespace", "image_topic", "params_file", "use_sim_time", "autostart"):
        assert name in args


def test_remapped_topic_is_the_declared_default() -> None:
    """The launch remaps 'image': that must be the node's (and the YAML's) image_topic."""
    from actfusion_ros.node_params import spec

    assert spec("image_topic").default == "image"
    assert read_params_file(REPO / "config" / "anticipate.yaml")["image_topic"] == "image"


def test_config_names_match_declarations() -> None:
    values = read_params_file(REPO / "config" / "anticipate.yaml")
    missing = sorted(PARAMETER_NAMES - set(values))
    extra = sorted(set(values) - PARAMETER_NAMES)
    assert not missing, f"declared by the node but missing from config/anticipate.yaml: {missing}"
    assert not extra, f"in config/anticipate.yaml but not declared by the node: {extra}"


def test_setup_installs_launch_and_config() -> None:
    setup_py = (REPO / "setup.py").read_text()
    assert "launch/*.launch.py" in setup_py and "config/*.yaml" in setup_py
    # the console script enters through actfusion_ros.node.main, which installs the signal handling before it
    # imports the node
    assert "actfusion_node = actfusion_ros.node:main" in setup_py
