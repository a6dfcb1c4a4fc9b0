"""Launch actfusion_node: ``ros2 launch actfusion_ros anticipate.launch.py image_topic:=/camera/image_raw``.

Arguments:
  params_file   parameters YAML (default: this package's config/anticipate.yaml)
  namespace     namespace of the node and of its relative topics (default: none)
  image_topic   topic the node's input 'image' is remapped to (default: /camera/image_raw)
  use_sim_time  follow /clock (e.g. when playing a bag with --clock) (default: false)
  autostart     configure and activate the (lifecycle) node at start; false: it waits unconfigured for
                `ros2 lifecycle set /actfusion_node configure` (default: true; overrides the params file)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "actfusion_ros"


def generate_launch_description() -> LaunchDescription:
    """One actfusion_node with the arguments above."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "anticipate.yaml")
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    image_topic = LaunchConfiguration("image_topic")
    use_sim_time = LaunchConfiguration("use_sim_time")
    autostart = LaunchConfiguration("autostart")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="Parameters YAML of actfusion_node"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its relative topics"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Camera topic (Image, or CompressedImage with compressed:=true "
                                          "in the params file)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock as the ROS time"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate the lifecycle node at start (false: "
                                          "wait for 'ros2 lifecycle set <node> configure')"),
        Node(
            package=PACKAGE,
            executable="actfusion_node",
            name="actfusion_node",
            namespace=namespace,
            output="screen",
            emulate_tty=True,
            parameters=[params_file, {"use_sim_time": ParameterValue(use_sim_time, value_type=bool),
                                       "autostart": ParameterValue(autostart, value_type=bool)}],
            remappings=[("image", image_topic)],
        ),
    ])
