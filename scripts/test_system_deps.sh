#!/usr/bin/env bash
# Installs the Debian packages the test suite's real daemons need (`make test` runs it before pytest), so no
# test depends on another having installed them first. Root with apt-get: installs what is missing, once;
# otherwise says what is missing and exits 0 (the tests that need it then skip, naming the package).
#
#   scripts/test_system_deps.sh          # install what is missing
#   scripts/test_system_deps.sh --list   # the packages, one per line
set -euo pipefail

# package -> a command it provides, or an absolute path of a file it installs (how "installed" is checked)
PACKAGES=(
  "slurm-wlm:slurmctld"     # tests/test_launch_slurm.py: a real SLURM (slurmctld, slurmd, sbatch, scontrol)
  "munge:munged"            # SLURM's authentication
  "iproute2:ip"             # network-namespace hosts (scripts/hosts.sh)
  "openssh-server:sshd"     # tests/test_*_hosts.py: horovodrun over a real sshd on each host
  "opencv-doc:/usr/share/doc/opencv-doc/examples/data/messi5.jpg"  # tests/test_faces_builtin.py: real faces
)

if [ "${1:-}" = "--list" ]; then
  for entry in "${PACKAGES[@]}"; do echo "${entry%%:*}"; done
  exit 0
fi

present() {  # a command on PATH or in /usr/sbin, or an absolute file path
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ;;
  esac
}

missing=()
for entry in "${PACKAGES[@]}"; do
  present "${entry#*:}" || missing+=("${entry%%:*}")
done
[ ${#missing[@]} = 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "test_system_deps: not installed: ${missing[*]} (needs root and apt-get); the tests that use them will skip" >&2
  exit 0
fi
echo "test_system_deps: installing ${missing[*]} (about a minute)" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
