"""Declaring ``actfusion_node``'s parameters on an rclpy node: descriptors and start-up problems (ROS glue).

The table and the validation are ROS-free (:mod:`actfusion_ros.node_params`); this module turns each
:class:`~actfusion_ros.node_params.ParamSpec` into a read-only ``ParameterDescriptor`` (with
``IntegerRange`` / ``FloatingPointRange`` where numeric) and collects what rclpy refuses.
"""
from __future__ import annotations

from typing import Any, Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException)
from rclpy.node import Node

from actfusion_ros.builder import StartupError
from actfusion_ros.node_params import (PARAMETERS, NodeSettings, ParameterError, ParamSpec, declaration_problem,
                                       validate_values)

__all__ = ["declare_node_parameters", "descriptor"]

# Parameters rclpy or launch may pass that are not ours (not reported as unknown).
_FOREIGN_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_services",
                       "qos_overrides.")


def descriptor(p: ParamSpec) -> ParameterDescriptor:
    """The read-only descriptor of ``p``: description, constraints, numeric range."""
    desc = ParameterDescriptor(description=p.description, additional_constraints=p.constraints,
                               read_only=True)
    if p.type is int and p.minimum is not None:
        desc.integer_range = [IntegerRange(from_value=int(p.minimum), to_value=int(p.maximum), step=1)]
    elif p.type is float and p.minimum is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(p.minimum),
                                                        to_value=float(p.maximum), step=0.0)]
    return desc


def declare_node_parameters(node: Node, warn: Callable[[str], object]) -> NodeSettings:
    """Declare every parameter of :data:`PARAMETERS` on ``node`` (read-only, with ranges) and validate
    them; :class:`StartupError` lists every problem. ``warn`` receives the unknown parameters given.

    ``node`` must be built with ``automatically_declare_parameters_from_overrides=True``, so that every
    override is visible through the public ``get_parameters_by_prefix``; ours are re-declared here with
    their descriptors.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    given = {name: param.value for name, param in node.get_parameters_by_prefix("").items()}
    for p in PARAMETERS:
        if node.has_parameter(p.name):
            node.undeclare_parameter(p.name)  # auto-declared from its override, without a descriptor
        try:
            values[p.name] = node.declare_parameter(p.name, p.default, descriptor(p)).value
        except (InvalidParameterTypeException, InvalidParameterValueException, ParameterException) as err:
            problems.append(declaration_problem(
                p, given.get(p.name), err, wrong_type=isinstance(err, InvalidParameterTypeException),
                out_of_range=isinstance(err, InvalidParameterValueException)))
    names = {p.name for p in PARAMETERS}
    unknown = sorted(n for n in given if n not in names and not n.startswith(_FOREIGN_PARAMETERS))
    if unknown:
        warn(f"ignoring unknown parameter(s) {unknown} (typo?); known: {sorted(names)}")
    try:
        settings = validate_values(values)
    except ParameterError as err:
        problems.extend(err.problems)
        settings = None
    if problems:
        raise StartupError(str(ParameterError(problems)))
    assert settings is not None
    return settings
