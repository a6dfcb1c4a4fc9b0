"""The harness of the DDS tests and benchmarks (:mod:`actfusion_ros.testing.ros_harness`).

It lives in the package, not in ``tests/``, so that ``benchmarks/`` and ``tests/`` both use it without importing
each other; the node and the tools never import it.
"""
