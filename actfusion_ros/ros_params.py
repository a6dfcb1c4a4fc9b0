"""``actfusion_node``'s parameters on an rclpy node: declared, guarded, read (ROS glue).

The table and the validation are ROS-free (:mod:`actfusion_ros.node_params`); this module turns each
:class:`~actfusion_ros.node_params.ParamSpec` into a ``ParameterDescriptor`` (with
``IntegerRange`` / ``FloatingPointRange`` where numeric) and collects what rclpy refuses;
:class:`NodeParameters` also refuses changes outside the unconfigured state and reads the settings.
"""
from __future__ import annotations

from typing import Callable, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException)
from rclpy.node import Node

from actfusion_ros.builder import StartupError
from actfusion_ros.node_params import (PARAMETERS, NodeSettings, ParameterError, ParamSpec, declaration_problem,
                                       parameter_change_refusal, validate_values)

__all__ = ["NodeParameters", "declare_node_parameters", "descriptor", "node_settings"]

# Parameters rclpy or launch may pass that are not ours (not reported as unknown).
_FOREIGN_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_services",
                       "qos_overrides.")


def descriptor(p: ParamSpec) -> ParameterDescriptor:
    """The descriptor of ``p``: description, constraints, numeric range. Writable: the node itself refuses
    changes outside the unconfigured state (they apply at the next ``configure``)."""
    desc = ParameterDescriptor(description=p.description, additional_constraints=p.constraints)
    if p.type is int and p.minimum is not None:
        desc.integer_range = [IntegerRange(from_value=int(p.minimum), to_value=int(p.maximum), step=1)]
    elif p.type is float and p.minimum is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(p.minimum),
                                                        to_value=float(p.maximum), step=0.0)]
    return desc


def declare_node_parameters(node: Node, warn: Callable[[str], object]) -> dict[str, str]:
    """Declare every parameter of :data:`PARAMETERS` on ``node`` (with descriptors and ranges).

    Returns what rclpy refused among the values given (params file, ``-p``), as ``{name: 'name: what is
    wrong'}``: such a parameter is declared with its default instead, and its problem stands until it is
    set again (see :func:`node_settings`). ``warn`` receives the unknown parameters given.

    ``node`` must be built with ``automatically_declare_parameters_from_overrides=True``, so that every
    override is visible through the public ``get_parameters_by_prefix``; ours are re-declared here with
    their descriptors.
    """
    problems: dict[str, str] = {}
    given = {name: param.value for name, param in node.get_parameters_by_prefix("").items()}
    for p in PARAMETERS:
        if node.has_parameter(p.name):
            node.undeclare_parameter(p.name)  # auto-declared from its override, without a descriptor
        try:
            node.declare_parameter(p.name, p.default, descriptor(p))
        except (InvalidParameterTypeException, InvalidParameterValueException, ParameterException) as err:
            problems[p.name] = declaration_problem(
                p, given.get(p.name), err, wrong_type=isinstance(err, InvalidParameterTypeException),
                out_of_range=isinstance(err, InvalidParameterValueException))
            node.declare_parameter(p.name, p.default, descriptor(p), ignore_override=True)
    names = {p.name for p in PARAMETERS}
    unknown = sorted(n for n in given if n not in names and not n.startswith(_FOREIGN_PARAMETERS))
    if unknown:
        warn(f"ignoring unknown parameter(s) {unknown} (typo?); known: {sorted(names)}")
    return problems


def node_settings(node: Node, declaration_problems: Mapping[str, str]) -> NodeSettings:
    """Validate the node's current parameter values; :class:`StartupError` lists every problem, those of
    ``declaration_problems`` (values rclpy refused, not set again since) first."""
    problems = list(declaration_problems.values())
    values = {p.name: node.get_parameter(p.name).value for p in PARAMETERS if p.name not in declaration_problems}
    settings = None
    try:
        settings = validate_values(values)
    except ParameterError as err:
        problems.extend(err.problems)
    if problems:
        raise StartupError(str(ParameterError(problems)))
    assert settings is not None
    return settings


class NodeParameters:
    """The parameters of ``node`` (built with ``automatically_declare_parameters_from_overrides=True``):
    declared by the constructor (:func:`declare_node_parameters`; ``warn`` receives the unknown ones),
    changed only while ``state()`` is ``unconfigured`` (:func:`~actfusion_ros.node_params.parameter_change_refusal`),
    read and validated by :meth:`settings` (each ``configure``)."""

    def __init__(self, node: Node, state: Callable[[], str], warn: Callable[[str], object]) -> None:
        self._node = node
        self._state = state
        #: values rclpy refused at start-up and not set again since (``{name: 'name: what is wrong'}``)
        self.declaration_problems = declare_node_parameters(node, warn)
        node.add_on_set_parameters_callback(self._on_set_parameters)
        node.add_post_set_parameters_callback(self._on_parameters_set)

    def settings(self) -> NodeSettings:
        """The validated settings (:func:`node_settings`); :class:`StartupError` says what is wrong."""
        return node_settings(self._node, self.declaration_problems)

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Our parameters change only while unconfigured (they are read by the next configure)."""
        refusal = parameter_change_refusal([p.name for p in params], self._state())
        return SetParametersResult(successful=refusal is None, reason=refusal or "")

    def _on_parameters_set(self, params: list) -> None:
        for p in params:  # a value set again replaces one rclpy refused at start-up
            self.declaration_problems.pop(p.name, None)
