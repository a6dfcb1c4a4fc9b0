"""``python -m actfusion_ros.tools.replay``: the ``actfusion-replay`` command."""
from actfusion_ros.tools.replay.cli import main

raise SystemExit(main())
