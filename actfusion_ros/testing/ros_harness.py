"""Harness for the tests and benchmarks that talk to actfusion_node over real, loopback-only DDS (ROS glue).

* :func:`ros_skip_reason`: why ROS tests cannot run here (``None`` when they can).
* :func:`loopback_env`: the environment of ``scripts/ros_env.sh`` with a given ``ROS_DOMAIN_ID``.
* :class:`NodeProcess`: ``python -m actfusion_ros.node`` as a subprocess with a params file, a
  namespace and remaps; output goes to a log file whose tail is put into failure messages.
* :class:`Client`: an rclpy node in its own context, spun in a background thread, recording what it
  receives (thread-safe lists) and publishing images.
* :class:`LifecycleClient`: calls a managed node's standard lifecycle services (``~/get_state``,
  ``~/change_state``, ``~/get_available_transitions``: what ``ros2 lifecycle get/set`` call) and its
  ``~/set_parameters`` service (what ``ros2 param set`` calls).
* :func:`node_session`: the one harness: a node process on its own domain and namespace, a client with
  an image publisher and subscriptions to the forecasts and /diagnostics, matched before it is handed over.

Lives in the package (not in ``tests/``) so that ``benchmarks/`` and ``tests/`` both use it without
importing each other.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = REPO / "config" / "fastdds_local.xml"


def ros_skip_reason() -> str | None:
    """``None`` if rclpy and every message package the node needs import; else the reason."""
    for mod in ("rclpy", "actfusion_msgs.msg", "sensor_msgs.msg", "diagnostic_msgs.msg", "std_srvs.srv"):
        try:
            importlib.import_module(mod)
        except Exception as err:  # noqa: BLE001 - any import failure means: skip
            hint = " (run scripts/build_msgs.sh .venv)" if mod.startswith("actfusion_msgs") else ""
            return f"{mod} not importable{hint}: {err}"
    return None


def unique_domain_id() -> int:
    """``ROS_DOMAIN_ID`` when set; else a domain in 20..219 derived from the pid (tests also use unique
    namespaces)."""
    from actfusion_ros.tools.ros_domain import domain_id
    return domain_id(20 + os.getpid() % 200)


def loopback_env(domain_id: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) + the loopback-only settings of ``scripts/ros_env.sh``."""
    env = dict(os.environ if base is None else base)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain_id),
               FASTDDS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE), PYTHONUNBUFFERED="1")
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.pop("ROS_STATIC_PEERS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def apply_loopback_env(domain_id: int) -> dict[str, str | None]:
    """Set the loopback env in this process (before creating a context); returns the old values."""
    keys = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE")
    old = {k: os.environ.get(k) for k in keys}
    new = loopback_env(domain_id)
    for k in keys:
        os.environ[k] = new[k]
    return old


def restore_env(old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextmanager
def private_context(domain_id: int) -> Iterator[Any]:
    """A private rclpy context on the loopback profile and ``domain_id`` (no signal handlers: pytest owns them)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    old = apply_loopback_env(domain_id)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)
        restore_env(old)


def write_params(path: Path, params: dict[str, Any]) -> Path:
    """Write a ROS 2 params file ``{/**: {ros__parameters: params}}``."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}, sort_keys=False))
    return path


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, *,
             details: Callable[[], str] | None = None, poll: float = 0.02) -> Any:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            # what timed out is said again after the details: a CI log that keeps only the head and the
            # tail of a long failure still shows it
            extra = f"\n{details()}\n(timed out waiting for {what})" if details else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(poll)


class NodeProcess:
    """``actfusion_node`` in a subprocess (the venv's python, the repository on PYTHONPATH)."""

    def __init__(self, params_file: Path, log_path: Path, *, domain_id: int, namespace: str = "",
                 remaps: Iterable[tuple[str, str]] = (), extra_args: Iterable[str] = (),
                 module: str = "actfusion_ros.node", module_args: Iterable[str] = ()) -> None:
        """``module``/``module_args``: run ``python -m module *module_args --ros-args ...`` instead (a test
        wrapper around the node, e.g. tests/slow_forecaster_node.py)."""
        cmd = [sys.executable, "-m", module, *module_args, "--ros-args", "--params-file", str(params_file)]
        if namespace:
            cmd += ["-r", f"__ns:={namespace}"]
        for src, dst in remaps:
            cmd += ["-r", f"{src}:={dst}"]
        cmd += list(extra_args)
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=loopback_env(domain_id), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return f"--- node log ({self.log_path}) ---\n{text[-n:]}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Make sure the process (and its group) is gone; always safe to call."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._log.close()


class Client:
    """A test-side rclpy node in its own context, spun by a background thread.

    ``subscribe(topic, type)`` records every message as ``(receive_time_ns, msg)`` in
    ``self.received[topic]``; use :meth:`messages` to read a copy.
    """

    def __init__(self, name: str, domain_id: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self._old_env = apply_loopback_env(domain_id)
        self.context = rclpy.Context()
        # no rclpy signal handlers in the test process: Ctrl-C must still stop pytest
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.received: dict[str, list[tuple[int, Any]]] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, Exception):  # noqa: BLE001 - ends with the test
            pass

    def subscribe(self, topic: str, msg_type: Any, depth: int = 200) -> Any:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        with self._lock:
            self.received.setdefault(topic, [])

        def record(msg: Any) -> None:
            with self._lock:
                self.received[topic].append((time.time_ns(), msg))

        return self.node.create_subscription(
            msg_type, topic, record, QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE))

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return [m for _, m in self.received.get(topic, [])]

    def timed_messages(self, topic: str) -> list[tuple[int, Any]]:
        with self._lock:
            return list(self.received.get(topic, []))

    def close(self) -> None:
        import rclpy

        try:
            self.executor.shutdown(timeout_sec=2.0)
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)
            self._thread.join(5.0)
            restore_env(self._old_env)


class LifecycleClient:
    """The standard lifecycle services of the managed node ``node_fqn`` (e.g. ``/ns/actfusion_node``), and its
    parameter service, called from ``client``'s node. Every call waits at most ``timeout`` s for the reply;
    a missing reply fails the test naming the service."""

    def __init__(self, client: Client, node_fqn: str, timeout: float = 60.0) -> None:
        from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
        from rcl_interfaces.srv import SetParameters

        self.node_fqn, self.timeout = node_fqn, timeout
        make = client.node.create_client
        self._get_state = make(GetState, f"{node_fqn}/get_state")
        self._change_state = make(ChangeState, f"{node_fqn}/change_state")
        self._transitions = make(GetAvailableTransitions, f"{node_fqn}/get_available_transitions")
        self._set_parameters = make(SetParameters, f"{node_fqn}/set_parameters")

    def ready(self) -> bool:
        """True once every service has a server."""
        return all(c.service_is_ready() for c in (self._get_state, self._change_state, self._transitions,
                                                  self._set_parameters))

    def _call(self, client: Any, request: Any, what: str) -> Any:
        future = client.call_async(request)
        wait_for(future.done, self.timeout, f"the reply of {client.srv_name} ({what})")
        return future.result()

    def get_state(self) -> str:
        """The node's primary state label (``unconfigured``, ``inactive``, ``active``, ``finalized``)."""
        return self._call(self._get_state, self._get_state.srv_type.Request(), "get").current_state.label

    def change_state(self, transition: str) -> bool:
        """Trigger ``transition`` (``configure``, ``activate``, ``deactivate``, ``cleanup``, ``shutdown``) as
        ``ros2 lifecycle set`` does: its id looked up among the available transitions, then sent to
        ``change_state``. True when it succeeded; False when it failed or is not available now."""
        ids = {label: tid for tid, label in self._transition_ids()}
        if transition not in ids:
            return False
        request = self._change_state.srv_type.Request()
        request.transition.id = ids[transition]
        return bool(self._call(self._change_state, request, transition).success)

    def available_transitions(self) -> list[str]:
        """The labels of the transitions possible from the current state (``ros2 lifecycle list``)."""
        return [label for _, label in self._transition_ids()]

    def _transition_ids(self) -> list[tuple[int, str]]:
        reply = self._call(self._transitions, self._transitions.srv_type.Request(), "list")
        return [(t.transition.id, t.transition.label) for t in reply.available_transitions]

    def set_parameters(self, values: dict[str, Any]) -> list[Any]:
        """Set parameters as ``ros2 param set`` does; the ``SetParametersResult`` of each."""
        from rclpy.parameter import Parameter

        request = self._set_parameters.srv_type.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return list(self._call(self._set_parameters, request, f"set {sorted(values)}").results)


def make_image(msg_type: Any, rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8", pad: int = 0,
               frame_id: str = "camera") -> Any:
    """A ``sensor_msgs/Image`` from an RGB array (data assigned as bytes: the fast path)."""
    from actfusion_ros.frames import rgb_to_image_fields

    f = rgb_to_image_fields(rgb, encoding, pad)
    msg = msg_type()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding = f["height"], f["width"], f["encoding"]
    msg.is_bigendian, msg.step = f["is_bigendian"], f["step"]
    msg.data = f["data"]
    return msg


def synthetic_frame(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A frame whose colour changes every 20 frames (so there is something to segment)."""
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], np.uint8)
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = colours[(i // 20) % len(colours)]
    frame[: height // 2, : width // 2] = (i * 7) % 256  # a moving-ish patch
    return frame


def diagnostics_values(array_msg: Any, name_contains: str) -> dict[str, str] | None:
    """The key/values of the first status in a DiagnosticArray whose name contains ``name_contains``."""
    for status in array_msg.status:
        if name_contains in status.name:
            return {kv.key: kv.value for kv in status.values}
    return None


@dataclass
class NodeSession:
    """What :func:`node_session` hands over: the node process, the client and the topics it uses."""

    node: NodeProcess
    client: Client
    namespace: str
    image_pub: Any
    future_topic: str
    current_topic: str
    future_sub: Any
    diagnostics_sub: Any
    lifecycle: LifecycleClient | None = None

    def diagnostics(self) -> list[dict[str, str]]:
        """The node's /diagnostics values received so far, oldest first."""
        found = (diagnostics_values(a, f"{self.namespace}/actfusion_node") for a in
                 self.client.messages("/diagnostics"))
        return [d for d in found if d]


@contextmanager
def node_session(workdir: Path, params: dict[str, Any], *, name: str, image_depth: int = 10,
                 reliable: bool = True, depth: int = 200, current: bool = False, match_s: float = 60.0,
                 extra_args: Iterable[str] = (), module: str = "actfusion_ros.node",
                 module_args: Iterable[str] = (), active: bool = True) -> Iterator[NodeSession]:
    """Start ``actfusion_node`` with ``params`` (written to ``workdir/params.yaml``, log in
    ``workdir/node.log``) on a fresh domain under the namespace ``/<name><pid>``, its ``image`` input
    remapped to ``<ns>/camera``; connect a client publishing images there (``image_depth``, reliable or
    best effort) and subscribed (``depth``) to the forecasts, /diagnostics and, with ``current``, the
    current action; wait until they match (``RuntimeError`` with the node's log if it exits first).
    ``active=False`` (a node started with ``autostart: false``): wait only for its lifecycle services and
    /diagnostics, since its image subscription and forecast publishers appear with configure / activate.
    ``session.lifecycle`` calls the node's lifecycle and parameter services. On the way out the client is
    closed and the process killed if still running."""
    from actfusion_msgs.msg import ActionForecast, ActionSegment
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    domain = unique_domain_id()
    ns = f"/{name}{os.getpid()}"
    node = NodeProcess(write_params(workdir / "params.yaml", params), workdir / "node.log", domain_id=domain,
                       namespace=ns, remaps=[("image", f"{ns}/camera")], extra_args=extra_args, module=module,
                       module_args=module_args)
    client = None
    try:
        client = Client(f"{name}_client", domain)
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        pub = client.node.create_publisher(Image, f"{ns}/camera",
                                           QoSProfile(depth=image_depth, reliability=reliability))
        future_topic, current_topic = f"{ns}/actfusion/future_actions", f"{ns}/actfusion/current_action"
        future_sub = client.subscribe(future_topic, ActionForecast, depth)
        if current:
            client.subscribe(current_topic, ActionSegment, depth)
        diag_sub = client.subscribe("/diagnostics", DiagnosticArray, depth)
        lifecycle = LifecycleClient(client, f"{ns}/actfusion_node", timeout=match_s)
        wait_for(lambda: not node.alive() or (diag_sub.get_publisher_count() > 0 and lifecycle.ready() and (
                     not active or (pub.get_subscription_count() > 0 and future_sub.get_publisher_count() > 0))),
                 match_s, "the node's subscription and publishers to match", details=node.log_tail)
        if not node.alive():
            raise RuntimeError(f"the node exited with {node.proc.returncode} before matching\n{node.log_tail()}")
        yield NodeSession(node, client, ns, pub, future_topic, current_topic, future_sub, diag_sub, lifecycle)
    finally:
        node.kill()
        if client is not None:
            client.close()


class CameraFeed:
    """What :func:`camera_feed` hands over: ``count`` frames sent so far and their ``stamps``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamps: list[int] = []

    def add(self, stamp_ns: int) -> None:
        with self._lock:
            self._stamps.append(stamp_ns)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._stamps)

    @property
    def stamps(self) -> set[int]:
        with self._lock:
            return set(self._stamps)


@contextmanager
def camera_feed(session: NodeSession, hz: float = 20.0, join_s: float = 60.0) -> Iterator[CameraFeed]:
    """Publish :func:`synthetic_frame` images stamped with the wall clock on ``session.image_pub`` at about
    ``hz`` until the block ends; yields the :class:`CameraFeed` (what was sent)."""
    from sensor_msgs.msg import Image

    stop, feed = threading.Event(), CameraFeed()

    def run() -> None:
        while not stop.is_set():
            stamp = time.time_ns()
            session.image_pub.publish(make_image(Image, synthetic_frame(feed.count), stamp))
            feed.add(stamp)
            stop.wait(1 / hz)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield feed
    finally:
        stop.set()
        thread.join(join_s)


def wait_statuses(session: NodeSession, state: str, more: int, timeout: float = 60.0) -> dict[str, str]:
    """Wait for ``more`` further /diagnostics statuses of the node reporting lifecycle ``state``; the last one
    (fails with the node's log when it exits or ``timeout`` passes first)."""
    def statuses() -> list[dict[str, str]]:
        return [d for d in session.diagnostics() if d.get("lifecycle_state") == state]

    target = len(statuses()) + more
    wait_for(lambda: not session.node.alive() or len(statuses()) >= target, timeout,
             f"{more} diagnostics statuses in state {state}", details=session.node.log_tail)
    assert session.node.alive(), session.node.log_tail()
    return statuses()[-1]
