#!/usr/bin/env bash
# Run HERE (a machine that reaches the package registries), before a device call: fills .whl/ with
# the cp312 manylinux wheels of what paitune needs at run time and the GPU image lacks, pinned to the
# versions in .venv, plus ray repacked as ray-nojars.tar.xz (see bench/device/README.md).
# Fails when .whl/ exceeds 56 MiB or .whl/ plus the working tree that travels exceeds 63 MiB.
#   bench/device/prepare.sh [--max-mib N] [--call-mib N] [--python PATH]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
python=.venv/bin/python
[ -x "$python" ] || { echo "no $root/.venv: run make install first" >&2; exit 1; }

# .whl/ must stay out of git (and so out of the tree a call sends unless carried).
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
git check-ignore -q .whl/x.whl || { echo ".whl/ is not ignored by git" >&2; exit 1; }

exec "$python" bench/device/prepare.py "$@"
