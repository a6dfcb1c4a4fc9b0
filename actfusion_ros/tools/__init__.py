"""The commands around the node, for development and evaluation (none of them runs on the robot's node path).

=================  ===============================================================================
module             what it is
=================  ===============================================================================
``replay``         ``actfusion-replay``: a recording through the node's streaming core, scored (a package)
``extract``        ``actfusion-extract``: features of bags or videos as an MS-TCN dataset, as the node samples
``play``           ``actfusion-play``: a bag published on ROS 2 in real time with ``/clock``
``demo``           ``actfusion-demo``: the synthetic world, training, the live node over DDS and the replay
``bags``           reading and writing rosbag2 (sqlite3, MCAP) without a ROS install
``world``          the demo's synthetic activity world (someone making tea)
``ros_domain``     which ROS domain the demo and the DDS tests use
=================  ===============================================================================

They import the core (:mod:`actfusion_ros.stream`, :mod:`actfusion_ros.builder`, ...); the core and the node
never import them.
"""
