"""Regenerate the TensorRT API name lists (``tests/data/tensorrt_names_<version>.txt``) that
``tests/test_tensorrt_api.py`` checks the TensorRT backend's source against.

    .venv/bin/python tests/data/tensorrt_api_names.py 10.3.0 11.4.0.106

For each version it downloads NVIDIA's ``tensorrt-cu12-bindings`` wheel from PyPI (``pip download --no-deps``;
about 1.3 MB: the Python module without libnvinfer), and imports that module in a subprocess against stand-in
``libnvinfer`` / ``libnvonnxparser`` / ``libnvinfer_plugin`` libraries built here with ``cc`` (the nine C
entry points the bindings link, each returning 0; nothing is ever called: importing only registers the
classes and enums). The module's own names are then read by introspection: every public module attribute,
every public member of each class (enum members included), one level of nested classes, and each method's
return type where its pybind signature names a TensorRT class (``Builder.create_network ->
INetworkDefinition``), which lets the test follow a variable from ``trt.Builder(...)`` to the methods called
on it.

Needs: network access to PyPI, a C compiler, and a Python whose version matches the wheels' tag (the
bindings wheels are per CPython version; this project's venv is 3.11). The name lists are checked in, so
the test itself needs none of this. ``--wheel-dir`` reuses downloaded wheels.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
PACKAGE = "tensorrt-cu12-bindings"

#: The C functions the bindings module imports from TensorRT's libraries (``nm -D --undefined-only``).
_STUB_SOURCE = """
void *createInferBuilder_INTERNAL(void *a, int b) { return 0; }
void *createInferRefitter_INTERNAL(void *a, void *b, int c) { return 0; }
void *createInferRuntime_INTERNAL(void *a, int b) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *a, void *b, int c) { return 0; }
void *createNvOnnxParser_INTERNAL(void *a, void *b, int c) { return 0; }
void *getBuilderPluginRegistry(int a) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void *a, const char *b) { return 0; }
"""
_STUB_LIBRARIES = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin")

#: Run inside the subprocess: print ``{"version": ..., "names": {name: return type or ""}}`` as JSON.
_INTROSPECT = r'''
import json, re
import tensorrt_bindings as trt

def returns(obj, name):
    """The TensorRT class a callable returns, from its pybind signature line(s); '' if none or several."""
    pattern = re.compile(r"\s*(?:\d+\.\s*)?" + re.escape(name) + r"\(.*\)\s*->\s*([A-Za-z_][\w.]*)\s*$")
    kinds = set()
    for line in (getattr(obj, "__doc__", None) or "").splitlines():
        match = pattern.match(line)
        if match:
            kinds.add(match.group(1).split(".")[-1])
    kinds = {k for k in kinds if isinstance(getattr(trt, k, None), type)}
    return kinds.pop() if len(kinds) == 1 else ""

def public(name):
    return not name.startswith("_")

names = {"__version__": ""}
for name in dir(trt):
    if not public(name):
        continue
    value = getattr(trt, name)
    names[name] = returns(value, name) if callable(value) and not isinstance(value, type) else ""
    if not isinstance(value, type):
        continue
    for member in dir(value):
        if not public(member):
            continue
        attr = getattr(value, member, None)
        names[f"{name}.{member}"] = returns(attr, member) if callable(attr) and not isinstance(attr, type) else ""
        if isinstance(attr, type) and attr.__module__ == value.__module__:
            for inner in dir(attr):
                if public(inner):
                    names[f"{name}.{member}.{inner}"] = ""
print(json.dumps({"version": trt.__version__, "names": names}))
'''


def list_path(version: str) -> Path:
    """Where the name list of TensorRT ``version`` is checked in."""
    return HERE / f"tensorrt_names_{version}.txt"


def read_names(path: str | Path) -> dict[str, str]:
    """``{name: return type or ''}`` from a name list (``#`` lines are comments)."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, kind = line.partition(" -> ")
        out[name.strip()] = kind.strip()
    return out


def _download(version: str, wheel_dir: Path) -> Path:
    found = sorted(wheel_dir.glob(f"tensorrt_cu12_bindings-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        f"{PACKAGE}=={version}", "-d", str(wheel_dir)], check=True)
        found = sorted(wheel_dir.glob(f"tensorrt_cu12_bindings-{version}-*.whl"))
    if not found:
        raise SystemExit(f"no {PACKAGE} {version} wheel in {wheel_dir}")
    return found[0]


def _stub_libraries(out: Path, major: str) -> None:
    source = out / "stub.c"
    source.write_text(_STUB_SOURCE)
    for lib in _STUB_LIBRARIES:
        soname = f"{lib}.so.{major}"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out / soname), f"-Wl,-soname,{soname}", str(source)],
                       check=True)


def extract(version: str, wheel_dir: Path) -> dict[str, str]:
    """The public names of the bindings of TensorRT ``version`` (see the module docstring)."""
    wheel = _download(version, wheel_dir)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(root / "site")
        _stub_libraries(root, version.split(".")[0])
        env = {**os.environ, "LD_LIBRARY_PATH": str(root), "PYTHONPATH": str(root / "site")}
        done = subprocess.run([sys.executable, "-c", _INTROSPECT], env=env, check=True, capture_output=True,
                              text=True)
    data = json.loads(done.stdout)
    if data["version"] != version:
        raise SystemExit(f"{wheel.name} says it is TensorRT {data['version']}, not {version}")
    return data["names"]


def write_list(version: str, names: dict[str, str]) -> Path:
    path = list_path(version)
    lines = [f"# Public names of TensorRT {version}'s Python bindings ({PACKAGE}=={version} from PyPI),",
             "# written by: .venv/bin/python tests/data/tensorrt_api_names.py <versions>",
             "# 'Class.method -> Class' where the method returns a TensorRT class.",
             *(f"{name} -> {kind}" if kind else name for name, kind in sorted(names.items()))]
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", help="TensorRT versions, e.g. 10.3.0 11.4.0.106")
    parser.add_argument("--wheel-dir", type=Path, default=None, help="where the wheels are (or go)")
    args = parser.parse_args(argv)
    for version in args.versions:
        if not re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", version):
            parser.error(f"not a version: {version!r}")
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheel_dir or Path(tmp)
        wheel_dir.mkdir(parents=True, exist_ok=True)
        for version in args.versions:
            names = extract(version, wheel_dir)
            print(f"{write_list(version, names)}: {len(names)} names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
