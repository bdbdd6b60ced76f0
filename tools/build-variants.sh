#!/usr/bin/env bash
# Builds the static worker (tools/build-static.sh) at several git revisions and gzips each into dist/variants/NAME.gz,
# for an A/B on the GPU machine with tools/gpu/ab.sh (carry "dist/variants"). The revisions are checked out one after another
# in one git worktree (.variants-tree/, git-ignored), so that each build after the first is incremental.
# Usage: tools/build-variants.sh NAME=REV ...      e.g. tools/build-variants.sh main=main prefetch=ssd-prefetch
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -gt 0 ]] || { echo "usage: tools/build-variants.sh NAME=REV ..." >&2; exit 2; }
for spec in "$@"; do
    [[ "$spec" == *=* ]] || { echo "error: '$spec' is not NAME=REV" >&2; exit 2; }
    git rev-parse --verify --quiet "${spec#*=}^{commit}" > /dev/null \
        || { echo "error: no revision '${spec#*=}' here (git branch -a lists them)" >&2; exit 2; }
done
root=$PWD tree=$PWD/.variants-tree
mkdir -p dist/variants
if [[ ! -d "$tree" ]]; then git worktree add --detach "$tree" HEAD > /dev/null; fi
for spec in "$@"; do
    name=${spec%%=*} revision=${spec#*=}
    git -C "$tree" checkout --quiet --detach "$revision"
    echo "building $name ($(git -C "$tree" log --oneline -1 | cut -c1-72))"
    (cd "$tree" && tools/build-static.sh > /dev/null)
    gzip -c "$tree/dist/ssm-scope-worker" > "dist/variants/$name.gz"
    echo "  dist/variants/$name.gz: $(( $(stat -c %s "dist/variants/$name.gz") / 1024 / 1024 )) MiB"
done
last=${*: -1}
last=${last%%=*}
echo "carry [\"dist/variants\"] (not all of dist: the plain worker there would take the 64 MiB) and run there:"
echo "  gunzip -c dist/variants/$last.gz > dist/ssm-scope-worker && chmod +x dist/ssm-scope-worker && tools/gpu/check.sh"
echo "  tools/gpu/ab.sh $(for spec in "$@"; do printf '%s=dist/variants/%s.gz ' "${spec%%=*}" "${spec%%=*}"; done)-- SWEEP-ARGUMENTS"
