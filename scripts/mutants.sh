#!/usr/bin/env bash
# Mutation testing (`make mutants`): mutmut mutates each pure module in a scratch copy of the tree and runs that
# module's fast tests against every mutant; prints each module's killed/total and the surviving mutants.
#
#   scripts/mutants.sh                      every module below
#   scripts/mutants.sh data/distributed/sharding.py     one module (its tests from the table below)
#
# The copy (runs/mutants/tree, or MUTANTS_DIR/tree) keeps the working tree untouched while mutmut edits files in
# place; `twostream.*` imports resolve to the copy through a shim package on PYTHONPATH, ahead of the editable
# install. Results stay in the copy: `cd runs/mutants/tree && ../../../.venv/bin/mutmut show ID`.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${TWOSTREAM_BIN:-$REPO/.venv/bin}
OUT=${MUTANTS_DIR:-$REPO/runs/mutants}
FAST="-x -q -p no:cacheprovider"
deselect() { printf -- '--deselect=%s ' "$@"; }   # tests that start processes: seconds each, for every mutant

# module | its fast tests (pytest arguments without spaces: files, node ids, --deselect=ID)
CLIPS=tests/test_clips.py
TABLE=(
    "data/decode/sampling.py|$CLIPS::test_sampling_modes $CLIPS::test_sample_by_time_picks_the_frame_on_screen_at_each_tick"
    "data/distributed/sharding.py|tests/test_sharding.py"
    "data/decode/augment.py|$CLIPS::test_flip_negates_horizontal_flow_exactly $CLIPS::test_crop_and_flip_are_the_same_for_both_streams"
    "data/decode/flow_format.py|$CLIPS::test_flip_negates_horizontal_flow_exactly $CLIPS::test_crop_and_flip_are_the_same_for_both_streams tests/test_video_flow.py"
    "trainer/video/metrics.py|tests/test_metrics.py"
    "trainer/engine/schedule.py|tests/test_step.py::test_schedules"
    "trainer/config.py|tests/test_config.py tests/test_config_schema.py $(deselect tests/test_config.py::test_prepare_fills_the_cache_that_train_reads_by_default_and_clean_removes_it tests/test_config_schema.py::test_the_installed_command_exits_2_with_one_line tests/test_config_schema.py::test_the_shell_launcher_runs_the_same_checks)"
)

copy_tree() {
    rm -rf "$OUT"
    mkdir -p "$OUT/tree" "$OUT/shim/twostream"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$OUT/tree"
    for folder in data models trainer launch; do ln -s "$OUT/tree/$folder" "$OUT/shim/twostream/$folder"; done
    echo '"""Shim: twostream.* from the mutation copy (scripts/mutants.sh)."""' > "$OUT/shim/twostream/__init__.py"
}

run_module() {
    local module=$1 tests=$2 runner
    # mutmut counts only exit code 1 as "killed"; a mutant that breaks an import makes pytest exit 2: also killed
    runner="bash -c '$BIN/python -m pytest $FAST $tests tests/test_mutation_kills.py || exit 1'"
    echo "== $module: $runner"
    local code=0
    "$BIN/mutmut" run --paths-to-mutate "$module" --tests-dir tests/ --runner "$runner" \
        --test-time-base 60 --no-progress || code=$?
    if (( code & 1 )); then echo "mutmut failed on $module (exit $code)" >&2; exit 1; fi
}

copy_tree
cd "$OUT/tree"
export PYTHONPATH=$OUT/shim
export TF_CPP_MIN_LOG_LEVEL=3
for entry in "${TABLE[@]}"; do
    module=${entry%%|*}
    if [[ $# -gt 0 && " $* " != *" $module "* ]]; then continue; fi
    run_module "$module" "${entry#*|}"
done
"$BIN/mutmut" results
"$BIN/python" - <<'PY'
import sqlite3
rows = sqlite3.connect(".mutmut-cache").execute(
    "SELECT SourceFile.filename, Mutant.status FROM Mutant JOIN Line ON Mutant.line = Line.id "
    "JOIN SourceFile ON Line.sourcefile = SourceFile.id").fetchall()
modules = sorted({name for name, _ in rows})
for name in modules:
    statuses = [status for file, status in rows if file == name]
    killed = sum(s in ("ok_killed", "bad_timeout") for s in statuses)
    print(f"{name}: {killed}/{len(statuses)} killed ({100 * killed / len(statuses):.0f}%)")
killed = sum(s in ("ok_killed", "bad_timeout") for _, s in rows)
print(f"total: {killed}/{len(rows)} killed ({100 * killed / max(1, len(rows)):.0f}%)")
PY
