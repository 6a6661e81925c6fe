# Sourced by scripts/test, scripts/demo, scripts/bench and .ci/run: the set-up they share, so the
# README's two commands work on a fresh machine with only cargo and python3 installed.
#   karpctl_target_dir    cargo's target directory (honours CARGO_TARGET_DIR and .cargo/config)
#   karpctl_emulator      a private Python environment with the pinned AWS emulator, under the
#                         target directory: made once, reused after; exports KARPCTL_PYTHON
#   karpctl_reference     KARPCTL_REFERENCE_DIR from ../shared when it is there; otherwise one
#                         line saying the conformance tests skip

# The emulator the integration tests start (pinned: tests/support/moto_ext.py hooks into it).
KARPCTL_MOTO='moto[server]==5.2.1'

karpctl_target_dir() {
    cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

karpctl_emulator() {
    local venv stamp
    venv="$(karpctl_target_dir)/emulator-venv"
    stamp="$venv/karpctl-requirements.txt"
    if ! { [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$KARPCTL_MOTO" ]; }; then
        echo "setting up the AWS emulator ($KARPCTL_MOTO) in $venv; once, reused after" >&2
        rm -rf "$venv"
        python3 -m venv "$venv" || {
            echo "error: python3 could not create a virtual environment; install its venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2
            return 1
        }
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$KARPCTL_MOTO" || {
            rm -rf "$venv"
            echo "error: pip could not install $KARPCTL_MOTO (is PyPI reachable?)" >&2
            return 1
        }
        echo "$KARPCTL_MOTO" >"$stamp"
    fi
    export KARPCTL_PYTHON="$venv/bin/python"
}

karpctl_reference() {
    local dir
    if [ -n "${KARPCTL_REFERENCE_DIR:-}" ]; then
        return 0
    fi
    dir="$(cd .. && pwd)/shared/reference/karpenter"
    if [ -d "$dir" ]; then
        export KARPCTL_REFERENCE_DIR="$dir"
    else
        echo "conformance tests will skip: no reference files at $dir (set KARPCTL_REFERENCE_DIR to run them)" >&2
    fi
}
