"""package.xml declares what ``rosdep install`` can resolve, with real keys, and nothing the package imports is
left out.

A ``rosdep check``-style validation without rosdep or network access: every dependency key is either a ROS
package name (our own packages, ``*_msgs``-style interface packages, the few core packages in
:data:`ROS_PACKAGES`) or a system key in :data:`VERIFIED_SYSTEM_KEYS`, each checked by hand against rosdistro's
rosdep database; the pip-only dependencies never appear as keys and are documented; and every third-party
module that the installed code (or the tests) import maps to a declared key or to a documented pip-only
dependency, so a new ``import foo`` without a declaration fails here.
"""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XML = ROOT / "package.xml"
MSGS_XML = ROOT / "actfusion_msgs" / "package.xml"
NODE_DOC = ROOT / "docs" / "node.md"
FIRST_FIVE_MINUTES = "## First five minutes on a robot"

#: Directories whose code is installed (setup.py packages + the launch file) or run by ``colcon test``.
RUNTIME_SOURCES = ("actfusion_ros", "model", "training", "launch")
TEST_SOURCES = ("tests",)
#: Top-level names of this repository's own code (not dependencies).
OWN_MODULES = frozenset({"actfusion_ros", "actfusion_model", "actfusion_training", "tests", "benchmarks"})

#: System rosdep keys used here, each found in rosdistro's rosdep/python.yaml: the stored ros/rosdistro
#: snapshot 662921b9 and a current copy of the file (the Crola1702/rosdistro fork at 041c9753, which lists
#: Ubuntu noble): every key has a ``debian`` and an ``ubuntu`` entry there (python3-opencv: ubuntu
#: [python3-opencv] in the current file; the old snapshot listed only bionic..focal).
VERIFIED_SYSTEM_KEYS: dict[str, str] = {
    "python3-numpy": "rosdep/python.yaml",
    "python3-yaml": "rosdep/python.yaml",
    "python3-opencv": "rosdep/python.yaml",
    "python3-scipy": "rosdep/python.yaml",
    "python3-tqdm": "rosdep/python.yaml",
    "python3-matplotlib": "rosdep/python.yaml",
    "python3-pytest": "rosdep/python.yaml",
    "python3-hypothesis": "rosdep/python.yaml",
}

#: ROS packages (released in kilted/distribution.yaml of rosdistro: rclpy, launch, launch_ros, ament_index,
#: ament_cmake, rosidl_defaults repositories) whose names do not end in an interface suffix.
ROS_PACKAGES = frozenset({"rclpy", "launch", "launch_ros", "ament_index_python", "ament_cmake",
                          "rosidl_default_generators", "rosidl_default_runtime"})
OWN_PACKAGES = frozenset({"actfusion_ros", "actfusion_msgs"})
#: REP 144 package name, and the suffixes of ROS interface packages (sensor_msgs, std_srvs, rcl_interfaces).
ROS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
INTERFACE_SUFFIXES = ("_msgs", "_srvs", "_interfaces")

#: Third-party top-level module -> the rosdep key that provides it.
MODULE_KEYS: dict[str, str] = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "scipy": "python3-scipy",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
    **{name: name for name in (
        "rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "std_srvs", "sensor_msgs", "diagnostic_msgs",
        "lifecycle_msgs", "rosgraph_msgs", "vision_msgs", "actfusion_msgs", "launch", "launch_ros",
        "ament_index_python")},
}

#: Pip-only third-party modules -> their PyPI distribution (no rosdep key; documented in package.xml and
#: docs/node.md instead).
PIP_ONLY_MODULES: dict[str, str] = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "onnx": "onnx",
    "tensorrt": "tensorrt",
    "rosbags": "rosbags",
    "mcap": "mcap",
}
#: setup.py requirement (distribution name) -> rosdep key, or None for a pip-only one.
DIST_KEYS: dict[str, str | None] = {
    "numpy": "python3-numpy", "pyyaml": "python3-yaml", "opencv-python-headless": "python3-opencv",
    "scipy": "python3-scipy", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "pytest": "python3-pytest", "hypothesis": "python3-hypothesis",
    "torch": None, "onnx": None, "onnxruntime": None, "onnxscript": None, "rosbags": None, "mcap": None,
    "tensorboard": None, "ruff": None,
}
#: Pip-only distributions package.xml's comment and docs/node.md must name.
PIP_ONLY_DISTS = frozenset({*PIP_ONLY_MODULES.values(), "onnxscript", "tensorboard", "ruff"})

#: Declared keys no Python file imports, and why they are declared anyway.
DECLARED_WITHOUT_IMPORT: dict[str, str] = {
    "lifecycle_msgs": "the managed (lifecycle) node's State/Transition types and the `ros2 lifecycle` verbs",
    "vision_msgs": "vision_msgs/LabelInfo for the class map, published when importable (issue 14)",
}

#: Tags whose keys rosdep installs for running the package, and for its tests (the first one is suggested).
EXEC_TAGS = ("exec_depend", "depend")
TEST_TAGS = ("test_depend", "exec_depend", "depend")
DEPEND_TAGS = ("depend", "build_depend", "buildtool_depend", "build_export_depend", "buildtool_export_depend",
               "exec_depend", "test_depend", "doc_depend")


@dataclass
class Manifest:
    """What the checks read from one package.xml."""

    root: ET.Element
    deps: dict[str, list[str]] = field(default_factory=dict)  # tag -> keys in order
    comments: str = ""

    def keys(self, tags: tuple[str, ...] = DEPEND_TAGS) -> set[str]:
        """The keys declared under any of ``tags`` (default: every dependency tag)."""
        return {k for t in tags for k in self.deps.get(t, [])}


def read_manifest(text: str) -> Manifest:
    """Parse package.xml text, keeping its comments (where the pip-only dependencies are documented)."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    root = ET.fromstring(text, parser=parser)
    manifest = Manifest(root=root)
    for child in root:
        if child.tag is ET.Comment:
            manifest.comments += (child.text or "") + "\n"
        elif child.tag in DEPEND_TAGS:
            manifest.deps.setdefault(child.tag, []).append((child.text or "").strip())
    return manifest


def is_ros_package_name(key: str) -> bool:
    """A ROS package this repository may depend on by name (rosdep resolves it from the distribution)."""
    return bool(ROS_NAME.match(key)) and (
        key in OWN_PACKAGES or key in ROS_PACKAGES or key.endswith(INTERFACE_SUFFIXES))


def _pip_name_of(key: str) -> str:
    """``python3-torch`` / ``python3-rosbags-pip`` / ``torch`` -> ``torch`` / ``rosbags``: the project behind a key."""
    name = key.removeprefix("python3-").removesuffix("-pip")
    return name.removesuffix("-gpu")


def dependency_problems(manifest: Manifest) -> list[str]:
    """Keys rosdep could not resolve (neither a ROS package nor a verified system key), pip-only projects used
    as keys, empty and duplicate entries."""
    problems = []
    tags_of: dict[str, list[str]] = {}
    for tag, keys in manifest.deps.items():
        for key in keys:
            if not key:
                problems.append(f"<{tag}> is empty")
                continue
            tags_of.setdefault(key, []).append(tag)
            if _pip_name_of(key) in PIP_ONLY_DISTS:
                problems.append(f"<{tag}>{key}</{tag}>: {_pip_name_of(key)} is pip-only; document it in the "
                                "package.xml comment and docs/node.md instead of declaring a key")
            elif not (is_ros_package_name(key) or key in VERIFIED_SYSTEM_KEYS):
                problems.append(f"<{tag}>{key}</{tag}>: not a ROS package name and not a verified rosdep key "
                                "(add it to VERIFIED_SYSTEM_KEYS once found in rosdistro's rosdep/*.yaml)")
    for key, tags in tags_of.items():
        if len(tags) != len(set(tags)) or ("depend" in tags and len(tags) > 1):
            problems.append(f"{key} is declared twice ({', '.join(f'<{t}>' for t in tags)})")
    return problems


def third_party_imports(dirs: tuple[str, ...], root: Path = ROOT) -> dict[str, list[str]]:
    """Top-level module -> ``file:line`` of each absolute import of a non-stdlib, non-own module under ``dirs``
    (conditional imports included: an optional dependency is still a dependency)."""
    found: dict[str, list[str]] = {}
    for d in dirs:
        for path in sorted((root / d).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN_MODULES:
                        found.setdefault(top, []).append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def import_problems(manifest: Manifest, imports: dict[str, list[str]], tags: tuple[str, ...]) -> list[str]:
    """Imported modules that neither map to a key declared under ``tags`` nor are documented pip-only ones."""
    declared = manifest.keys(tags)
    problems = []
    for module, where in sorted(imports.items()):
        if module in PIP_ONLY_MODULES:
            continue
        key = MODULE_KEYS.get(module)
        if key is None:
            problems.append(f"import {module} ({where[0]}): unknown dependency; declare its rosdep key in "
                            "package.xml and MODULE_KEYS, or add it to PIP_ONLY_MODULES and document it")
        elif key not in declared:
            problems.append(f"import {module} ({where[0]}): package.xml lacks <{tags[0]}>{key}</{tags[0]}>")
    return problems


def _setup_call() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            return {kw.arg: kw.value for kw in node.keywords if kw.arg}
    raise AssertionError("setup.py has no setup(...) call")


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def _doc_section(text: str, heading: str) -> str:
    assert heading in text, f"docs/node.md has no section {heading!r}"
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return read_manifest(PACKAGE_XML.read_text())


def test_package_xml_is_format_3_with_the_basics(manifest: Manifest) -> None:
    root = manifest.root
    assert root.tag == "package" and root.get("format") == "3"
    assert PACKAGE_XML.read_text().count("package_format3.xsd") == 1
    assert root.findtext("name") == "actfusion_ros"
    version = root.findtext("version")
    assert version == ast.literal_eval(_setup_call()["version"]), "package.xml and setup.py versions differ"
    assert re.fullmatch(r"\d+\.\d+\.\d+", version or "")
    assert (root.findtext("description") or "").strip()
    assert (root.findtext("license") or "").strip()
    maintainers = root.findall("maintainer")
    assert maintainers and all(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", m.get("email", "")) and
                               (m.text or "").strip() for m in maintainers)
    assert [e.text for e in root.findall("export/build_type")] == ["ament_python"]
    # the format 3 schema's fixed sequence; everything else may follow in any order
    order = [c.tag for c in root if c.tag is not ET.Comment]
    assert order[:3] == ["name", "version", "description"]


def test_catkin_pkg_parses_and_validates_both_manifests() -> None:
    """The parser rosdep, colcon and bloom use (installed by scripts/build_msgs.sh) accepts both files."""
    package = pytest.importorskip("catkin_pkg.package")
    for path in (PACKAGE_XML, MSGS_XML):
        parsed = package.parse_package(str(path))
        parsed.validate()
        assert parsed.package_format == 3
    assert package.parse_package(str(PACKAGE_XML)).get_build_type() == "ament_python"


@pytest.mark.parametrize("path", [PACKAGE_XML, MSGS_XML], ids=["actfusion_ros", "actfusion_msgs"])
def test_every_key_is_a_ros_package_or_a_verified_rosdep_key(path: Path) -> None:
    assert dependency_problems(read_manifest(path.read_text())) == []


def test_pip_only_dependencies_are_not_keys_but_documented(manifest: Manifest) -> None:
    keys = {_pip_name_of(k) for k in manifest.keys()}
    assert not keys & PIP_ONLY_DISTS
    comment_words = set(re.findall(r"[a-z0-9_-]+", manifest.comments))
    assert PIP_ONLY_DISTS <= comment_words, PIP_ONLY_DISTS - comment_words
    section = _doc_section(NODE_DOC.read_text(), FIRST_FIVE_MINUTES)
    pip_lines = " ".join(line for line in section.splitlines() if "pip install" in line)
    missing = {d for d in PIP_ONLY_DISTS - {"tensorrt"} if not re.search(rf"\b{re.escape(d)}\b", pip_lines)}
    assert not missing, f"docs/node.md '{FIRST_FIVE_MINUTES}' gives no pip install line for {missing}"
    assert "tensorrt" in section.lower()


def test_every_third_party_import_of_the_package_is_declared(manifest: Manifest) -> None:
    imports = third_party_imports(RUNTIME_SOURCES)
    assert {"numpy", "cv2", "yaml", "rclpy", "torch"} <= set(imports)  # the scan sees the real imports
    assert import_problems(manifest, imports, EXEC_TAGS) == []


def test_every_third_party_import_of_the_tests_is_declared(manifest: Manifest) -> None:
    imports = third_party_imports(TEST_SOURCES)
    assert {"pytest", "hypothesis"} <= set(imports)
    assert import_problems(manifest, imports, TEST_TAGS) == []


def test_every_declared_key_is_used(manifest: Manifest) -> None:
    """No stale declarations: each key is imported somewhere (or listed, with its reason, as declared ahead)."""
    used = {MODULE_KEYS[m] for m in third_party_imports(RUNTIME_SOURCES + TEST_SOURCES) if m in MODULE_KEYS}
    unused = manifest.keys() - used - set(DECLARED_WITHOUT_IMPORT)
    assert not unused, f"declared but never imported: {sorted(unused)}"
    assert set(DECLARED_WITHOUT_IMPORT) <= manifest.keys(EXEC_TAGS)


def test_every_setup_py_requirement_maps_to_a_key_or_a_pip_only_dependency(manifest: Manifest) -> None:
    kw = _setup_call()
    extras = ast.literal_eval(kw["extras_require"])
    requirements = ast.literal_eval(kw["install_requires"]) + [r for name, reqs in extras.items()
                                                               if name != "ros-pip" for r in reqs]
    problems = []
    for requirement in requirements:
        dist = _dist_name(requirement)
        if dist not in DIST_KEYS:
            problems.append(f"{requirement}: map it in DIST_KEYS to its rosdep key, or None if pip-only")
        elif DIST_KEYS[dist] is None and dist not in PIP_ONLY_DISTS:
            problems.append(f"{requirement}: pip-only but not in PIP_ONLY_DISTS (documented ones)")
        elif DIST_KEYS[dist] is not None and DIST_KEYS[dist] not in manifest.keys():
            problems.append(f"{requirement}: package.xml lacks {DIST_KEYS[dist]}")
    assert problems == []
    # the ROS wheels of the `ros-pip` extra are ROS packages a ROS install provides: declared by name
    ros_wheels = {_dist_name(r).removeprefix("ros-").replace("-", "_") for r in extras["ros-pip"]}
    assert ros_wheels - {"rmw_fastrtps_cpp"} <= manifest.keys()


def test_the_checks_catch_a_missing_key_an_invented_key_and_a_pip_only_key() -> None:
    """The checks above can fail: drop python3-opencv, add an unverified key and a pip-only one."""
    text = PACKAGE_XML.read_text()
    assert "<exec_depend>python3-opencv</exec_depend>" in text
    without_opencv = read_manifest(text.replace("<exec_depend>python3-opencv</exec_depend>", ""))
    problems = import_problems(without_opencv, third_party_imports(RUNTIME_SOURCES), EXEC_TAGS)
    assert len(problems) == 1 and problems[0].startswith("import cv2 (") and "python3-opencv" in problems[0]

    extra = "<exec_depend>python3-numpyy</exec_depend><exec_depend>python3-torch</exec_depend></package>"
    invented = read_manifest(text.replace("</package>", extra))
    problems = dependency_problems(invented)
    assert len(problems) == 2
    assert "python3-numpyy" in problems[0] and "not a verified rosdep key" in problems[0]
    assert "python3-torch" in problems[1] and "pip-only" in problems[1]

    assert import_problems(read_manifest(text), {"foo": ["x.py:1"]}, EXEC_TAGS) == [
        "import foo (x.py:1): unknown dependency; declare its rosdep key in package.xml and MODULE_KEYS, or "
        "add it to PIP_ONLY_MODULES and document it"]


def test_rosdep_from_paths_must_name_the_nested_msgs_package() -> None:
    """rosdep crawls --from-paths with catkin_pkg, which stops descending at the first package.xml: from the
    repository root it finds only actfusion_ros, so the documented command names actfusion_msgs' path too
    (otherwise --ignore-src does not know actfusion_msgs is source, and rosdep looks for a key of that name)."""
    packages = pytest.importorskip("catkin_pkg.packages")
    assert list(packages.find_packages(str(ROOT))) == ["."]
    assert [p.name for p in packages.find_packages(str(ROOT / "actfusion_msgs")).values()] == ["actfusion_msgs"]
    section = _doc_section(NODE_DOC.read_text(), FIRST_FIVE_MINUTES)
    commands = [line for line in section.splitlines() if line.lstrip().startswith("rosdep install")]
    assert commands and all("actfusion_msgs" in line and "--ignore-src" in line for line in commands), commands
