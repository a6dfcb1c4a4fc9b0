# shellcheck shell=bash
# Source this file (do not execute it) to get an isolated, loopback-only ROS 2
# environment for actfusion_ros tests and demos:
#
#     source scripts/ros_env.sh
#
# - ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: discovery only on 127.0.0.1
#   (ROS_LOCALHOST_ONLY no longer exists in Kilted and is silently ignored).
# - FASTDDS_DEFAULT_PROFILES_FILE: config/fastdds_local.xml of this repository
#   (16 MB shared-memory segment + UDP restricted to 127.0.0.1).
# - ROS_DOMAIN_ID: kept if already set, otherwise 100 + ($$ mod 100), i.e. in
#   100..199, so that parallel test runs in different shells do not see each other.

if [ -n "${BASH_SOURCE[0]:-}" ]; then
    _actfusion_env_src="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
    # shellcheck disable=SC2296
    _actfusion_env_src="${(%):-%x}"
else
    _actfusion_env_src="$0"
fi
_actfusion_repo="$(cd "$(dirname "${_actfusion_env_src}")/.." && pwd)"

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="${_actfusion_repo}/config/fastdds_local.xml"
if [ -z "${ROS_DOMAIN_ID:-}" ]; then
    ROS_DOMAIN_ID=$(( $$ % 100 + 100 ))
fi
export ROS_DOMAIN_ID

if [ ! -f "${FASTDDS_DEFAULT_PROFILES_FILE}" ]; then
    echo "ros_env.sh: warning: ${FASTDDS_DEFAULT_PROFILES_FILE} not found" >&2
fi

unset _actfusion_env_src _actfusion_repo
