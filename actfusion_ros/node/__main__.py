"""``python -m actfusion_ros.node``: :func:`actfusion_ros.node.main`."""
import sys

from actfusion_ros.node import main

sys.exit(main())
