#!/usr/bin/env bash
# Wall time of `make demo` from a fresh clone, and the numbers it prints.
#
# Usage: bash benchmarks/demo_time.sh [--reuse-venv]
#   --reuse-venv  link this checkout's .venv into the clone, timing pretraining + evaluation only
#                 (without it the clone installs torch and everything else from scratch).
# Writes benchmarks/results/demo.md.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/geossl"
cd "$work/geossl"
mode="fresh clone, fresh virtual environment (install included)"
if [[ "${1:-}" == "--reuse-venv" ]]; then
  ln -s "$repo/.venv" .venv
  touch -d '+1 hour' .venv/.installed 2>/dev/null || true
  mode="fresh clone, existing virtual environment (install excluded)"
fi
export GEOSSL_CACHE_DIR="$work/cache"
start=$(date +%s)
make demo 2>&1 | tr '\r' '\n' | grep -v -E '^(Epoch|extract features|Training:)' | tee "$work/demo.log"
total=$(( $(date +%s) - start ))
out="$repo/benchmarks/results/demo.md"
{
  echo "# make demo: wall time and output"
  echo
  echo "Mode: $mode. Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git -C "$repo" rev-parse --short HEAD)."
  echo
  echo "**Total wall time of \`make demo\`: ${total} s** (target ≤ 300 s)."
  echo
  echo '```'
  grep -v -E 'Warning|warn|WARNING|LeafSpec|^\s*$' "$work/demo.log" | tail -n 25
  echo '```'
} > "$out"
echo "wrote $out (total ${total} s)"
