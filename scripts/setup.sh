#!/usr/bin/env bash
# Create/refresh the project's virtual environment; safe to run repeatedly (fast when nothing changed).
# Sourced by scripts/demo.sh and scripts/test.sh. Environment knobs:
#   LUNGSEG_VENV        where the venv lives (default: .venv in the repository)
#   LUNGSEG_TORCH_SPEC  torch requirement to install when no torch is importable (default: torch==2.13.0)
#   PYTHON              interpreter for the venv (default: python3; 3.10-3.12)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LUNGSEG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
EXTRAS="${1:-dev}"

if [ ! -x "$VENV/bin/python" ]; then
  # Reuse a torch the base interpreter already has rather than downloading a multi-GB build.
  if "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

if ! python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing ${LUNGSEG_TORCH_SPEC:-torch==2.13.0}" >&2
  python -m pip install -q --disable-pip-version-check "${LUNGSEG_TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  python -c "import torch" || { echo "[setup] torch could not be installed; set LUNGSEG_TORCH_SPEC to a torch you can install" >&2; exit 1; }
fi

# Offscreen 3D rendering (report pictures) needs EGL + Mesa's software renderer from the OS. Installed when
# we are root and they are missing; without them the 3D panels are skipped with a clear message.
GL_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri"
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s $GL_PACKAGES >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing headless OpenGL: $GL_PACKAGES" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $GL_PACKAGES) >/dev/null 2>&1 \
      || echo "[setup] could not install $GL_PACKAGES: 3D report panels will be skipped" >&2
  else
    echo "[setup] note: $GL_PACKAGES missing (need root to install): 3D report panels will be skipped" >&2
  fi
fi

STAMP="$VENV/.lungseg-installed-$EXTRAS"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing lungseg-core[$EXTRAS] into $VENV" >&2
  python -m pip install -q --disable-pip-version-check -e "$ROOT[$EXTRAS]" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  python -c "import lungseg_core" && echo "$WANT" > "$STAMP"
fi
