#!/usr/bin/env bash
# scripts/run-main-job.sh - the newcomer's one command: install what is
# needed (fresh Debian 12, as root), build, and run the main job,
# examples/batch_budget (docs/batch_budget.md). Arguments go to it:
#
#   scripts/run-main-job.sh                  # 2000 tasks under 256 MiB
#   scripts/run-main-job.sh --compare        # budget vs fixed vs unbounded
#   scripts/run-main-job.sh --help
#
# Re-running is cheap: apt-get is skipped when everything is installed,
# and build/ is reused (only what changed is rebuilt). SKIP_APT=1, or not
# being root, skips apt-get with a note.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exactly what building and running needs: a C compiler and libc headers,
# meson + ninja, pkg-config (finds jemalloc and check), check (the unit
# tests, built by default), jemalloc (measured per-task peaks).
PKGS=(gcc libc6-dev meson ninja-build pkg-config check libjemalloc-dev)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ "${SKIP_APT:-0}" = 1 ]; then
	echo "run-main-job: SKIP_APT=1: skipping apt-get${missing[*]:+ (missing: ${missing[*]})}" >&2
elif [ ${#missing[@]} -eq 0 ]; then
	:   # everything is installed: nothing to do
elif [ "$(id -u)" != 0 ]; then
	echo "run-main-job: not root: not installing ${missing[*]}" \
		"(run as root, or: sudo apt-get install -y ${missing[*]})" >&2
else
	echo "run-main-job: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	# (to stderr, like the build: stdout is the job's, e.g. for --json)
	apt-get update >&2 && apt-get install -y "${PKGS[@]}" >&2
fi

# Configure once; later runs reuse build/ and rebuild only what changed.
if [ ! -f build/build.ninja ]; then
	meson setup build >&2
fi
meson compile -C build >&2
exec build/examples/batch_budget "$@"
