"""The names of ``actfusion_node``'s topics and service, in one place (ROS-free).

The node creates its entities with the relative names (``NODE_*``), so a namespace applies;
:mod:`actfusion_ros.tools.replay.recording` writes its MCAP file under the names they resolve to for the default
node name without a namespace (``RESOLVED_*``).
"""
from __future__ import annotations

__all__ = ["DIAGNOSTICS_TOPIC", "NODE_CURRENT_TOPIC", "NODE_FUTURE_TOPIC", "NODE_LABEL_INFO_TOPIC",
           "NODE_MARGINALS_TOPIC", "NODE_NAME", "NODE_TIMELINE_TOPIC", "RESET_SERVICE", "RESOLVED_CURRENT_TOPIC",
           "RESOLVED_FUTURE_TOPIC", "RESOLVED_LABEL_INFO_TOPIC", "RESOLVED_MARGINALS_TOPIC", "RESOLVED_TIMELINE_TOPIC",
           "resolve"]

NODE_NAME = "actfusion_node"
NODE_FUTURE_TOPIC = "actfusion/future_actions"
NODE_CURRENT_TOPIC = "actfusion/current_action"
NODE_LABEL_INFO_TOPIC = "actfusion/label_info"
NODE_MARGINALS_TOPIC = "actfusion/future_marginals"
NODE_TIMELINE_TOPIC = "~/timeline_image"
DIAGNOSTICS_TOPIC = "/diagnostics"
RESET_SERVICE = "~/reset"


def resolve(name: str, node_name: str = NODE_NAME, namespace: str = "") -> str:
    """The full name of the relative or private topic ``name`` for ``node_name`` in ``namespace``."""
    ns = namespace.rstrip("/")
    if name.startswith("/"):
        return name
    if name.startswith("~/"):
        return f"{ns}/{node_name}/{name[2:]}"
    return f"{ns}/{name}"


RESOLVED_FUTURE_TOPIC = resolve(NODE_FUTURE_TOPIC)
RESOLVED_CURRENT_TOPIC = resolve(NODE_CURRENT_TOPIC)
RESOLVED_TIMELINE_TOPIC = resolve(NODE_TIMELINE_TOPIC)
RESOLVED_LABEL_INFO_TOPIC = resolve(NODE_LABEL_INFO_TOPIC)
RESOLVED_MARGINALS_TOPIC = resolve(NODE_MARGINALS_TOPIC)
