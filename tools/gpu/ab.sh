#!/usr/bin/env bash
# A/B timing of static workers (tools/build-static.sh, optionally gzipped) on the GPU machine: each round runs every
# worker's sweep once, in turn, so that drift on the machine falls on all of them alike; then a table of TTFT and TPOT
# medians per worker, round, model and context. The JSON-lines results go to $OUT (or /tmp/ab), one file per worker
# and round; `tools/gpu/ab.sh --table DIR` prints the table again from such a folder (python3 makes the table).
#
# Usage (from the repository root):
#   tools/gpu/ab.sh [-n ROUNDS] NAME=WORKER ... -- SWEEP-ARGUMENTS...
#   tools/gpu/ab.sh --table DIR
# A worker may carry environment settings after commas, NAME=WORKER,VAR=VALUE,...: one build measured under several
# settings of its switches (several names may share a worker).
# e.g. tools/gpu/ab.sh base=.helper-ab/base.gz new=.helper-ab/new.gz -- --backend cuda --dtype bf16 \
#          --model mamba2-1.3b --context 16k --repeats 2 --no-profile
set -uo pipefail

table() {
    python3 - "$1" <<'EOF'
import json, os, re, sys
folder = sys.argv[1]
rows = []
for name in sorted(os.listdir(folder), key=lambda n: (int(re.search(r"-(\d+)\.jsonl$", n).group(1))
                                                     if re.search(r"-(\d+)\.jsonl$", n) else 0, n)):
    match = re.fullmatch(r"(.+)-(\d+)\.jsonl", name)
    if not match:
        continue
    for line in open(os.path.join(folder, name)):
        record = json.loads(line)
        if "point" in record:
            p = record["point"]["_0"]
            rows.append((match[1], match[2], p["config"]["model"], p["config"]["context"],
                         "%.2f ms" % (p["ttft"]["median"] * 1e3), "%.3f ms" % (p["tpot"]["median"] * 1e3)))
        elif "failure" in record:
            f = record["failure"]["_0"]
            rows.append((match[1], match[2], f["config"]["model"], f["config"]["context"], "failed", "failed"))
print("| worker | round | model | context | TTFT median | TPOT median |")
print("|---|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(str(v) for v in row) + " |")
EOF
}

if [[ "${1:-}" == "--table" ]]; then
    [[ -d "${2:-}" ]] || { echo "error: --table needs a folder of ab.sh results" >&2; exit 2; }
    table "$2"
    exit
fi

rounds=2
if [[ "${1:-}" == "-n" ]]; then rounds=$2; shift 2; fi
names=() workers=() settings=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
    [[ "$1" == *=* ]] || { echo "error: '$1' is not NAME=WORKER (usage: ab.sh [-n ROUNDS] NAME=WORKER ... -- SWEEP-ARGUMENTS)" >&2; exit 2; }
    spec=${1#*=}
    names+=("${1%%=*}") workers+=("${spec%%,*}")
    if [[ "$spec" == *,* ]]; then settings+=("${spec#*,}"); else settings+=(""); fi
    IFS=, read -r -a environment <<< "${settings[-1]}"
    for setting in "${environment[@]}"; do
        [[ "$setting" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] \
            || { echo "error: '$setting' in '$1' is not VAR=VALUE (a worker's settings: NAME=WORKER,VAR=VALUE,...)" >&2; exit 2; }
    done
    shift
done
[[ "${1:-}" == "--" && ${#names[@]} -gt 0 ]] || { echo "error: name the workers, then -- and the sweep's arguments" >&2; exit 2; }
shift
out=${OUT:-/tmp/ab}
mkdir -p "$out" /tmp/ab-workers
for i in "${!names[@]}"; do
    source=${workers[$i]} binary=/tmp/ab-workers/${names[$i]}
    [[ -f "$source" ]] || { echo "error: worker $source not found" >&2; exit 1; }
    if [[ "$source" == *.gz ]]; then gunzip -c "$source" > "$binary"; else cp "$source" "$binary"; fi
    chmod +x "$binary"
done
for round in $(seq 1 "$rounds"); do
    for i in "${!names[@]}"; do
        name=${names[$i]}
        log="$out/$name-$round.jsonl"
        rm -f "$log"
        IFS=, read -r -a environment <<< "${settings[$i]}"
        env "${environment[@]}" "/tmp/ab-workers/$name" sweep "$@" --quiet --out "$log" > /dev/null 2>&1 \
            || echo "warning: $name, round $round, exited with status $?" >&2
        echo "$name round $round done"
    done
done
if command -v python3 > /dev/null; then table "$out"; else echo "results in $out (python3 is missing here: run tools/gpu/ab.sh --table on them)"; fi
