#!/usr/bin/env bash
# Entry point of the bitstream image: export dir in, build dir (bitfile, .hwh, driver bundle) out.
#   build_bitfile.sh EXPORT_DIR OUT_DIR     (BOARD, TARGET_FPS, CLOCK_NS, FOLDING from the environment)
# The same script runs outside Docker, where it stops with a clear message if Vivado is missing.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: build_bitfile.sh EXPORT_DIR OUT_DIR" >&2
    exit 2
fi
export_dir=$1
out_dir=$2
if [ -z "${XILINX_VIVADO:-}" ] || [ ! -d "${XILINX_VIVADO}" ]; then
    echo "error: XILINX_VIVADO must point at a Vivado installation (mount it into the container)" >&2
    exit 2
fi
for tool in XILINX_VITIS XILINX_HLS; do
    if [ -n "${!tool:-}" ] && [ -f "${!tool}/settings64.sh" ]; then
        # shellcheck disable=SC1090,SC1091
        source "${!tool}/settings64.sh"
    fi
done
# shellcheck disable=SC1091
source "${XILINX_VIVADO}/settings64.sh"
args=(--export "$export_dir" --out "$out_dir" --board "${BOARD:-ZCU104}" --target-fps "${TARGET_FPS:-50000}"
      --folding "${FOLDING:-search}" --bitfile --force)
if [ -n "${CLOCK_NS:-}" ]; then
    args+=(--clock-ns "$CLOCK_NS")
fi
exec python -m build "${args[@]}"
