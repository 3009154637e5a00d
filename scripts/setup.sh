#!/usr/bin/env bash
# Set up everything the demo and the tests need, idempotently:
#   1. system packages (apt): the Fashion-MNIST data set and FFCV's build dependencies;
#   2. a virtual environment in .venv with torch 2.14.1 / torchvision 0.29.1;
#   3. the project itself, editable, with the dev, cluster and ffcv extras;
#   4. the Animal-MNIST data set (PyPI animal-mnist, without its dependencies: see below).
# A second run finds each step done and takes about a second.
#
# Environment knobs:
#   PYTHON=python3.11     interpreter for a new venv (default: python3)
#   VENV=.venv            where the venv lives
#   TLEG_SKIP_APT=1       never touch apt (only report what is missing)
#   TLEG_STRICT_APT=1     fail, rather than continue, when system packages are missing
#   TLEG_FORCE_PIP=1      re-run the pip steps even when they look done
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
EXTRAS="dev,cluster,ffcv"
# dataset-fashion-mnist: the demo's data (/usr/share/datasets/fashion-mnist/); g++: what
# torch.compile's CPU backend (model.compile) builds its kernels with.
# The rest: what the ffcv extra compiles against (opencv4 and libturbojpeg via pkg-config).
DATA_PKGS=(dataset-fashion-mnist g++)
FFCV_PKGS=(libopencv-dev libturbojpeg0-dev pkg-config)

say() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

missing_debs() {
    local p out=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
    done
    echo "${out[@]:-}"
}

# ---- 1. system packages ----------------------------------------------------------
ffcv_ok=1
install_system_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "not a Debian-like system: install by hand the equivalents of: ${DATA_PKGS[*]} ${FFCV_PKGS[*]}"
        warn "(Fashion-MNIST's four *-ubyte.gz files in /usr/share/datasets/fashion-mnist/; OpenCV 4 and"
        warn " libturbojpeg development files findable by pkg-config, for the ffcv extra)"
        [ "${TLEG_STRICT_APT:-0}" = 1 ] && die "system packages cannot be checked here"
        ffcv_ok=0
        return
    fi
    local missing
    missing="$(missing_debs "${DATA_PKGS[@]}" "${FFCV_PKGS[@]}")"
    if [ -z "$missing" ]; then
        say "system packages present: ${DATA_PKGS[*]} ${FFCV_PKGS[*]}"
        return
    fi
    if [ "${TLEG_SKIP_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing system packages: $missing"
        export DEBIAN_FRONTEND=noninteractive
        # `apt-get update` only when the package lists are empty or do not know a package.
        # shellcheck disable=SC2086
        if ! apt-get install -y --no-install-recommends $missing; then
            say "refreshing the package lists (apt-get update)"
            apt-get update || die "apt-get update failed (no access to the Debian archive?)"
            # shellcheck disable=SC2086
            apt-get install -y --no-install-recommends $missing \
                || die "apt-get install $missing failed; install these packages by hand and rerun"
        fi
        missing="$(missing_debs "${DATA_PKGS[@]}" "${FFCV_PKGS[@]}")"
        [ -z "$missing" ] || die "apt-get ran but these are still missing: $missing"
        return
    fi
    local why="not root"
    [ "$(id -u)" = 0 ] && why="apt-get not found"
    [ "${TLEG_SKIP_APT:-0}" = 1 ] && why="TLEG_SKIP_APT=1"
    warn "missing system packages ($why): $missing"
    warn "install them with:"
    warn "    sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing"
    [ "${TLEG_STRICT_APT:-0}" = 1 ] && die "system packages missing (TLEG_STRICT_APT=1)"
    case " $missing " in *" dataset-fashion-mnist "*)
        warn "without dataset-fashion-mnist the demo stops with an error naming that package";;
    esac
    for p in "${FFCV_PKGS[@]}"; do
        case " $missing " in *" $p "*) ffcv_ok=0;; esac
    done
    [ "$ffcv_ok" = 1 ] || warn "continuing without the ffcv extra (its build needs ${FFCV_PKGS[*]})"
}

# ---- 2. virtual environment with the pinned torch --------------------------------
make_venv() {
    if [ -x "$VENV/bin/python" ]; then
        say "virtual environment present: $VENV"
    else
        command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.10+)"
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
            || die "$PYTHON is $("$PYTHON" -V 2>&1); tleg-dist needs Python >= 3.10"
        say "creating virtual environment $VENV ($("$PYTHON" -V 2>&1))"
        "$PYTHON" -m venv "$VENV" || die "python -m venv failed (on Debian: apt-get install python3-venv)"
    fi
}

installed_version() {  # importlib.metadata is fast: it does not import torch
    "$VENV/bin/python" - "$1" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    print("")
EOF
}

install_torch() {
    local tv vv
    tv="$(installed_version torch)"
    vv="$(installed_version torchvision)"
    # Local builds carry a suffix (2.14.1+cu130): compare the public part.
    if [ "${TLEG_FORCE_PIP:-0}" != 1 ] && [ "${tv%%+*}" = "$TORCH_VERSION" ] && [ "${vv%%+*}" = "$TORCHVISION_VERSION" ]; then
        say "torch $tv and torchvision $vv present"
        return
    fi
    say "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (was: torch '${tv}', torchvision '${vv}')"
    "$VENV/bin/python" -m pip install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
}

# ---- 3. the project ---------------------------------------------------------------
install_project() {
    local extras="$EXTRAS" stamp="$VENV/.tleg-setup-stamp" want
    [ "$ffcv_ok" = 1 ] || extras="dev,cluster"
    # Redo the pip step only when what it depends on changed.
    want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) extras=$extras"
    if [ "${TLEG_FORCE_PIP:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$VENV/bin/python" -c 'import tleg_dist' 2>/dev/null; then
        say "tleg-dist[$extras] already installed"
        return
    fi
    # Pin torch to what step 2 installed, so no dependency can pull a newer build.
    local constraints="$VENV/tleg-constraints.txt"
    printf 'torch==%s\ntorchvision==%s\n' "$(installed_version torch)" "$(installed_version torchvision)" > "$constraints"
    say "installing tleg-dist[$extras] (editable)"
    if ! "$VENV/bin/python" -m pip install -q -c "$constraints" -e ".[$extras]"; then
        if [ "$extras" = "$EXTRAS" ]; then
            warn "installing with the ffcv extra failed; retrying without it (FFCV recipes will not run)"
            extras="dev,cluster"
            want="${want% extras=*} extras=$extras"
            "$VENV/bin/python" -m pip install -q -c "$constraints" -e ".[$extras]"
        else
            die "pip install -e .[$extras] failed"
        fi
    fi
    echo "$want" > "$stamp"
}

# ---- 4. Animal-MNIST (data.format=animal_mnist) ---------------------------------------
# Only its wheel's two data files are read (tleg_dist/data/animal_mnist.py); the package itself
# imports tensorflow, so its dependencies are never installed.
ANIMAL_MNIST_VERSION=0.4
install_animal_mnist() {
    local v
    v="$(installed_version animal-mnist)"
    if [ "${TLEG_FORCE_PIP:-0}" != 1 ] && [ "$v" = "$ANIMAL_MNIST_VERSION" ]; then
        say "animal-mnist $v present"
        return
    fi
    say "installing animal-mnist==$ANIMAL_MNIST_VERSION (--no-deps)"
    "$VENV/bin/python" -m pip install -q --no-deps "animal-mnist==$ANIMAL_MNIST_VERSION" \
        || warn "pip install --no-deps animal-mnist==$ANIMAL_MNIST_VERSION failed" \
                "(data.format=animal_mnist will say how to install it)"
}

install_system_packages
make_venv
install_torch
install_project
install_animal_mnist
say "done: $VENV/bin/python with torch $(installed_version torch), tleg-dist $(installed_version tleg-dist)"
