#!/usr/bin/env bash
# Entry point of the bitstream image: export dir in, build dir (bitfile, .hwh, driver bundle) out.
#   build_bitfile.sh EXPORT_DIR OUT_DIR     (BOARD, TARGET_FPS, CLOCK_NS, FOLDING, FINN_VERIFY from the environment)
# The same script runs outside Docker (with the project's virtualenv active), where it stops with
# a clear message if Vivado is missing. It sets up what must be in place before Python starts
# (the Xilinx settings, LD_LIBRARY_PATH); the rest of FINN's environment is export/finn_env.py's.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: build_bitfile.sh EXPORT_DIR OUT_DIR" >&2
    exit 2
fi
export_dir=$1
out_dir=$2
board=${BOARD:-ZCU104}
if [ -z "${XILINX_VIVADO:-}" ] || [ ! -d "${XILINX_VIVADO}" ]; then
    echo "error: XILINX_VIVADO must point at a Vivado installation (mount it into the container)" >&2
    exit 2
fi
# Xilinx's settings scripts read unset variables: source them without -u.
set +u
for tool in XILINX_VITIS XILINX_HLS; do
    if [ -n "${!tool:-}" ] && [ -f "${!tool}/settings64.sh" ]; then
        # shellcheck disable=SC1090,SC1091
        source "${!tool}/settings64.sh"
    fi
done
# shellcheck disable=SC1091
source "${XILINX_VIVADO}/settings64.sh"
if [ "$board" = U250 ]; then
    if [ -z "${XILINX_XRT:-}" ] && [ -f /opt/xilinx/xrt/setup.sh ]; then
        # shellcheck disable=SC1091
        source /opt/xilinx/xrt/setup.sh
    fi
    if [ -z "${PLATFORM_REPO_PATHS:-}" ] && [ -d /opt/xilinx/platforms ]; then
        export PLATFORM_REPO_PATHS=/opt/xilinx/platforms
    fi
fi
set -u
# The XSI simulator kernel is loaded into the Python process: the loader reads LD_LIBRARY_PATH
# only when a process starts.
LD_LIBRARY_PATH=$(python -m export.finn_env ld-library-path)
export LD_LIBRARY_PATH
args=(--export "$export_dir" --out "$out_dir" --board "$board" --target-fps "${TARGET_FPS:-50000}"
      --folding "${FOLDING:-search}" --bitfile --force)
if [ -n "${CLOCK_NS:-}" ]; then
    args+=(--clock-ns "$CLOCK_NS")
fi
# FINN's folded-cppsim and stitched-IP rtlsim checks run before synthesis unless FINN_VERIFY=0
if [ "${FINN_VERIFY:-1}" = 0 ]; then
    args+=(--no-finn-verify)
fi
exec python -m build "${args[@]}"
