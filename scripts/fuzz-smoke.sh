#!/usr/bin/env bash
# fuzz-smoke.sh BUILD_DIR — short fuzz runs of every tests/fuzz/fuzz_*.c target.
#
# For each target fuzz_X:
#   - a libFuzzer binary (BUILD_DIR/fuzz_X, or BUILD_DIR-fuzz/fuzz_X which this
#     script builds with clang + ASan/UBSan when clang is installed and
#     BUILD_DIR was not a clang build) runs for a few seconds (15 s by
#     default), seeded with a temporary copy of tests/fuzz/corpus/fuzz_X so
#     the repository is never written to;
#   - otherwise BUILD_DIR/fuzz_X_replay runs once over the repository corpus.
# Exit status is non-zero when any target crashes (or fails to run); the
# crashing input's path is printed with a hint to add it to the corpus.
#
# Environment: KD_FUZZ_SECONDS (per target, default 15), KD_FUZZ_BUDGET
# (whole script, default 60 s: per-target time shrinks to fit after the
# build), KD_FUZZ_NO_BUILD=1 (do not build BUILD_DIR-fuzz).
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
BUILD=${1%/}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
PER_TARGET=${KD_FUZZ_SECONDS:-15}
BUDGET=${KD_FUZZ_BUDGET:-60}
START=$SECONDS

TARGETS=()
for src in tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    TARGETS+=("$name")
done
if [ ${#TARGETS[@]} -eq 0 ]; then
    echo "fuzz-smoke: no targets in tests/fuzz/"
    exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kd-fuzz-smoke.XXXXXX") || exit 2
KEEP_TMP=0
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [ "$KEEP_TMP" = 1 ]; then
        # Keep only the crash artifacts.
        rm -rf "$TMP"/corpus-* 2>/dev/null
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

# ---- libFuzzer binaries: BUILD_DIR itself (a clang build) or BUILD_DIR-fuzz --
FUZZ_DIR=""
have_all() { # dir: 0 when every target has a binary there
    for t in "${TARGETS[@]}"; do [ -x "$1/$t" ] || return 1; done
    return 0
}
if have_all "$BUILD"; then
    FUZZ_DIR=$BUILD
elif [ "${KD_FUZZ_NO_BUILD:-0}" != 1 ] && command -v clang >/dev/null 2>&1; then
    FUZZ_DIR=$BUILD-fuzz
    echo "fuzz-smoke: building libFuzzer targets (clang, ASan+UBSan) in $FUZZ_DIR"
    if ! cmake -S . -B "$FUZZ_DIR" -DCMAKE_C_COMPILER=clang -DKD_SANITIZE=address,undefined -DKD_FUZZ=ON \
            >"$TMP/build.log" 2>&1 ||
       ! cmake --build "$FUZZ_DIR" --target "${TARGETS[@]}" -j"${JOBS:-2}" >>"$TMP/build.log" 2>&1; then
        echo "fuzz-smoke: the clang fuzz build failed; replaying the corpus instead (log below)"
        tail -n 20 "$TMP/build.log" | sed 's/^/    /'
        FUZZ_DIR=""
    fi
fi

# ---- time per target ------------------------------------------------------
n_fuzz=0
for t in "${TARGETS[@]}"; do
    [ -n "$FUZZ_DIR" ] && [ -x "$FUZZ_DIR/$t" ] && n_fuzz=$((n_fuzz + 1))
done
secs=$PER_TARGET
if [ $n_fuzz -gt 0 ]; then
    left=$((BUDGET - (SECONDS - START) - 5))
    fit=$((left / n_fuzz))
    [ "$fit" -lt "$secs" ] && secs=$fit
    [ "$secs" -lt 3 ] && secs=3
fi

# ---- run -----------------------------------------------------------------
failed=0
for t in "${TARGETS[@]}"; do
    corpus=tests/fuzz/corpus/$t
    if [ -n "$FUZZ_DIR" ] && [ -x "$FUZZ_DIR/$t" ]; then
        work=$TMP/corpus-$t
        art=$TMP/artifacts-$t
        mkdir -p "$work" "$art"
        [ -d "$corpus" ] && cp -R "$corpus"/. "$work"/ 2>/dev/null
        log=$TMP/$t.log
        echo "fuzz-smoke: $t: libFuzzer for ${secs}s (seeds: $corpus)"
        timeout -k 5 $((secs + 60)) "$FUZZ_DIR/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
            -artifact_prefix="$art/" -print_final_stats=0 "$work" >"$log" 2>&1
        rc=$?
        if [ $rc -ne 0 ]; then
            failed=1
            KEEP_TMP=1
            echo "fuzz-smoke: $t FAILED (exit $rc)"
            grep -E "ERROR|SUMMARY|runtime error|fuzz_|Test unit written" "$log" | head -n 20 | sed 's/^/    /'
            found=0
            for f in "$art"/*; do
                [ -e "$f" ] || continue
                found=1
                echo "fuzz-smoke: crashing input: $f"
                echo "    reproduce: $FUZZ_DIR/$t $f"
                echo "    once fixed, keep it as a regression test: cp $f $corpus/"
            done
            [ $found = 0 ] && echo "fuzz-smoke: no artifact written; full log: $log"
        else
            grep -E "^(Done|#[0-9]+ *DONE)" "$log" | tail -n 1 | sed "s/^/    /"
        fi
    elif [ -x "$BUILD/${t}_replay" ]; then
        log=$TMP/$t.log
        echo "fuzz-smoke: $t: replaying $corpus (no libFuzzer binary)"
        timeout -k 5 300 "$BUILD/${t}_replay" "$corpus" >"$log" 2>&1
        rc=$?
        if [ $rc -ne 0 ]; then
            failed=1
            KEEP_TMP=1
            echo "fuzz-smoke: $t FAILED (exit $rc)"
            grep -v '^running ' "$log" | grep -E "ERROR|SUMMARY|runtime error|fuzz_" | head -n 20 | sed 's/^/    /'
            last=$(grep '^running ' "$log" | tail -n 1 | sed -E 's/^running (.*) \([0-9]+ bytes\)$/\1/')
            if [ -n "$last" ]; then
                echo "fuzz-smoke: crashing input: $last"
                echo "    reproduce: $BUILD/${t}_replay with that file alone in a directory"
                echo "    it is already in the corpus: fix the bug, keep the file"
            fi
            echo "    full log: $log"
        else
            tail -n 1 "$log" | sed 's/^/    /'
        fi
    else
        echo "fuzz-smoke: $t: neither $FUZZ_DIR/$t nor $BUILD/${t}_replay exists (build first)"
        failed=1
    fi
done

echo "fuzz-smoke: ${#TARGETS[@]} targets, $((SECONDS - START))s, $([ $failed = 0 ] && echo OK || echo FAILED)"
exit $failed
