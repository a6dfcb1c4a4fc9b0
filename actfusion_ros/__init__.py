"""actfusion_ros: real-time temporal action segmentation and long-term anticipation with ActFusion.

The ROS-free streaming core lives in :mod:`actfusion_ros.stream`; the ROS node is a thin shell over it.
"""
