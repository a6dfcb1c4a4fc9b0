"""The TensorRT names our code uses exist in TensorRT 10.3 (JetPack 6, Jetson Orin) and in the newest 11.x
(desktop ``pip install tensorrt``): checked without TensorRT, on any machine.

The source of every module that uses TensorRT is parsed (``ast``); each ``trt.X`` / ``trt.X.Y`` name, and
each member used on a TensorRT object (a variable followed from ``trt.Builder(...)`` through the methods'
return types, or annotated ``tensorrt.Class``), must be in both checked-in name lists
(``tests/data/tensorrt_names_<version>.txt``, regenerated from the PyPI bindings wheels by
``tests/data/tensorrt_api_names.py``). Inside a version guard (an ``if`` on ``tensorrt_major(...)`` or on
``hasattr(trt...)``) a name need only exist in one of them.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def _load_name_lists_module():
    """tests/data/tensorrt_api_names.py (a script beside the name lists it writes and reads), loaded by path."""
    spec = importlib.util.spec_from_file_location("tensorrt_api_names", DATA / "tensorrt_api_names.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


read_names = _load_name_lists_module().read_names

#: Modules that call TensorRT (the test fails if one stops importing it, so the list stays true).
TENSORRT_MODULES = ("model/runtime/tensorrt_backend.py",)
#: Members the checker must resolve in tensorrt_backend.py: if a refactor hides them from its inference
#: (a receiver it cannot type), the test says so instead of silently checking less.
MUST_RESOLVE = ("Builder.create_network", "Builder.create_builder_config", "Builder.build_serialized_network",
                "OnnxParser.parse", "IBuilderConfig.add_optimization_profile", "IOptimizationProfile.set_shape",
                "Runtime.deserialize_cuda_engine", "ICudaEngine.create_execution_context",
                "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
                "IExecutionContext.execute_async_v3")
GUARDS = ("tensorrt_major", "hasattr")
_MODULE = "<tensorrt>"


@dataclass(frozen=True)
class Use:
    """One TensorRT name used at a line; ``guarded``: inside a version guard."""

    name: str
    line: int
    guarded: bool


def name_lists() -> dict[str, dict[str, str]]:
    """``{version: {name: return type}}`` of every checked-in list."""
    return {path.stem.removeprefix("tensorrt_names_"): read_names(path)
            for path in sorted(DATA.glob("tensorrt_names_*.txt"))}


def _classes(lists: dict[str, dict[str, str]]) -> set[str]:
    return {name.rsplit(".", 1)[0] for names in lists.values() for name in names if "." in name}


def _returns(lists: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: kind for names in lists.values() for name, kind in names.items() if kind}


class _Scope:
    """Flow-insensitive types of one function's names (and of its class's ``self.`` attributes)."""

    def __init__(self, classes: set[str], returns: dict[str, str], attributes: dict[str, str]) -> None:
        self.classes, self.returns, self.attributes = classes, returns, attributes
        self.names: dict[str, str] = {"trt": _MODULE}

    def annotation(self, node: ast.expr | None) -> str | None:
        """``tensorrt.Class`` / ``trt.Class`` annotations (strings too) name a TensorRT class."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node = ast.parse(node.value, mode="eval").body
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in ("tensorrt", "trt") and node.attr in self.classes:
            return node.attr
        return None

    def type_of(self, node: ast.expr) -> str | None:
        """``_MODULE``, ``class:Path`` (a class or enum object) or the class of an instance; None if unknown."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return self.attributes.get(node.attr)
            owner = self.type_of(node.value)
            if owner == _MODULE:
                return f"class:{node.attr}" if node.attr in self.classes else None
            if owner is not None and owner.startswith("class:"):
                path = f"{owner[6:]}.{node.attr}"
                return f"class:{path}" if path in self.classes else None
            return None
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "import_tensorrt":
                return _MODULE
            callee = self.type_of(node.func)
            if callee is not None and callee.startswith("class:"):
                return callee[6:]  # a constructor: trt.Builder(logger)
            if isinstance(node.func, ast.Attribute):
                owner = self.type_of(node.func.value)
                if owner is not None and not owner.startswith("class:") and owner != _MODULE:
                    return self.returns.get(f"{owner}.{node.func.attr}")
        return None

    def bind(self, function: ast.FunctionDef) -> None:
        """Type the parameters and, to a fixpoint, the names assigned in ``function``."""
        args = function.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs):
            kind = self.annotation(arg.annotation)
            if kind is not None:
                self.names[arg.arg] = kind
        for _ in range(4):
            for node in ast.walk(function):
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target, kind = node.targets[0], self.type_of(node.value)
                elif isinstance(node, ast.AnnAssign):
                    target, kind = node.target, self.annotation(node.annotation)
                    if kind is None and node.value is not None:
                        kind = self.type_of(node.value)
                else:
                    continue
                if kind is None:
                    continue
                if isinstance(target, ast.Name):
                    self.names[target.id] = kind
                elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id == "self":
                    self.attributes[target.attr] = kind


def _is_guard(test: ast.expr) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in GUARDS
               for n in ast.walk(test))


def _uses(scope: _Scope, node: ast.AST, guarded: bool, out: list[Use]) -> None:
    if isinstance(node, (ast.If, ast.IfExp)) and _is_guard(node.test):
        _uses(scope, node.test, guarded, out)
        for child in ([*node.body, *node.orelse] if isinstance(node, ast.If) else [node.body, node.orelse]):
            _uses(scope, child, True, out)
        return
    if isinstance(node, ast.Attribute):
        owner = scope.type_of(node.value)
        if owner == _MODULE:
            out.append(Use(node.attr, node.lineno, guarded))
        elif owner is not None:
            out.append(Use(f"{owner.removeprefix('class:')}.{node.attr}", node.lineno, guarded))
    for child in ast.iter_child_nodes(node):
        _uses(scope, child, guarded, out)


def tensorrt_uses(source: str, lists: dict[str, dict[str, str]]) -> list[Use]:
    """Every TensorRT name ``source`` uses (see the module docstring)."""
    tree = ast.parse(source)
    classes, returns = _classes(lists), _returns(lists)
    out: list[Use] = []
    owners: list[tuple[list[ast.FunctionDef], dict[str, str]]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            owners.append(([n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))], {}))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            owners.append(([node], {}))
    for functions, attributes in owners:
        for _ in range(2):  # self.<attr> types set in one method and used in another
            for function in functions:
                _Scope(classes, returns, attributes).bind(function)
        for function in functions:
            scope = _Scope(classes, returns, attributes)
            scope.bind(function)
            for statement in function.body:
                _uses(scope, statement, False, out)
    return out


def api_problems(source: str, lists: dict[str, dict[str, str]]) -> list[str]:
    """One line per name that a TensorRT release lacks: unguarded names must be in every list, guarded
    ones in at least one."""
    problems = []
    for use in tensorrt_uses(source, lists):
        lacking = [version for version, names in lists.items() if use.name not in names]
        if lacking and (not use.guarded or len(lacking) == len(lists)):
            where = "inside a version guard, but in no release" if use.guarded else "outside a version guard"
            problems.append(f"line {use.line}: trt {use.name} is not in TensorRT {', '.join(lacking)} ({where})")
    return sorted(set(problems))


@pytest.fixture(scope="module")
def lists() -> dict[str, dict[str, str]]:
    found = name_lists()
    majors = {version.split(".")[0] for version in found}
    assert any(v.startswith("10.3.") for v in found) and "11" in majors, \
        f"need the name lists of TensorRT 10.3 and 11.x in {DATA}, found {sorted(found)}"
    return found


@pytest.mark.parametrize("module", TENSORRT_MODULES)
def test_every_tensorrt_name_we_use_exists_in_10_3_and_11(module: str, lists: dict[str, dict[str, str]]) -> None:
    source = (REPO / module).read_text()
    assert "import_tensorrt" in source or "import tensorrt" in source, f"{module} no longer uses TensorRT"
    problems = api_problems(source, lists)
    assert not problems, f"{module}:\n" + "\n".join(problems)


def test_the_checker_follows_the_tensorrt_objects_of_the_backend(lists: dict[str, dict[str, str]]) -> None:
    source = (REPO / "model/runtime/tensorrt_backend.py").read_text()
    seen = {use.name for use in tensorrt_uses(source, lists)}
    unresolved = [name for name in MUST_RESOLVE if name not in seen]
    assert not unresolved, f"the checker no longer sees {unresolved}: annotate those receivers tensorrt.<Class>"


def test_a_removed_name_fails_and_a_guard_excuses_it(lists: dict[str, dict[str, str]]) -> None:
    removed = ("def build(trt, builder):\n"
               "    config = builder.create_builder_config()\n"
               "    config.set_flag(trt.BuilderFlag.FP16)\n")
    problems = api_problems(removed, lists)
    assert len(problems) == 1 and "BuilderFlag.FP16" in problems[0] and "11." in problems[0]
    assert "10.3" not in problems[0].split("TensorRT")[1]
    guarded = ("def build(trt, builder):\n"
               "    if tensorrt_major(trt) < 11:\n"
               "        trt.BuilderFlag.FP16\n")
    assert api_problems(guarded, lists) == []
    typo = "def build(trt):\n    if hasattr(trt, 'x'):\n        trt.BuilderFlag.FP17\n"
    assert "in no release" in api_problems(typo, lists)[0]


def test_members_of_tensorrt_objects_are_checked_through_return_types(lists: dict[str, dict[str, str]]) -> None:
    source = ("def run(trt, logger, data):\n"
              "    builder = trt.Builder(logger)\n"
              "    network = builder.create_network(0)\n"
              "    network.add_no_such_layer()\n"
              "    runtime: tensorrt.Runtime = make()\n"
              "    runtime.deserialize_cuda_engine(data).no_such_method()\n")
    problems = api_problems(source, lists)
    assert any("INetworkDefinition.add_no_such_layer" in p for p in problems), problems
    assert any("ICudaEngine.no_such_method" in p for p in problems), problems
    assert len(problems) == 2, problems
    uses = {u.name for u in tensorrt_uses(source, lists)}
    assert {"Builder", "Builder.create_network", "Runtime.deserialize_cuda_engine"} <= uses
