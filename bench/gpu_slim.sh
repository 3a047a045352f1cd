#!/usr/bin/env bash
# Shrink the checkout for a GPU call, then put everything back.
#
#   bash bench/gpu_slim.sh out [MODEL ...]   # move other models' weights and docs/ PNGs out
#   bash bench/gpu_slim.sh back              # move them back (git status is clean again)
#   bash bench/gpu_slim.sh size [PATH ...]   # MB that would travel: tracked files + PATHs
#
# Why: the device tool sends the working tree plus the `carry` paths, at most 64 MiB in all, and
# the tracked tree alone is about 63 MB (the shipped weights and the contact sheets). Keeping only
# the weights a call needs (default: unet unet_bins) leaves about 16 MB, so about 51 MB for the
# carried wheels and training data. The files go to $STASH (default ../.gpu-slim, outside the
# repository) and nothing is deleted. Do not commit while slimmed: back first.
set -euo pipefail
cd "$(dirname "$0")/.."
STASH=${STASH:-../.gpu-slim}
STASH=${STASH%/}
command=${1:-}
shift || true

# what travels: tracked files and untracked files that git does not ignore (one du for all)
tracked_mb() {
  git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null |
    tail -1 | awk '{printf "%.1f", $1 / 1e6}'
}

case "$command" in
  out)
    if [ -e "$STASH" ]; then
      echo "error: $STASH already exists; run 'bash bench/gpu_slim.sh back' first" >&2
      exit 1
    fi
    if ! git diff --quiet || ! git diff --cached --quiet; then
      echo "error: the tree has uncommitted changes; commit them first" >&2
      exit 1
    fi
    keep=" ${*:-unet unet_bins} "
    for model in $keep; do
      if [ ! -d "deepcolor/weights/$model" ]; then
        echo "error: no deepcolor/weights/$model to keep (see ls deepcolor/weights)" >&2
        exit 1
      fi
    done
    files=()
    for folder in deepcolor/weights/*/; do
      model=$(basename "$folder")
      [[ $keep == *" $model "* ]] && continue
      while IFS= read -r -d '' f; do files+=("$f"); done < <(git ls-files -z "$folder")
    done
    while IFS= read -r -d '' f; do files+=("$f"); done < <(git ls-files -z 'docs/*.png')
    for f in "${files[@]}"; do
      mkdir -p "$STASH/$(dirname "$f")"
      mv "$f" "$STASH/$f"
    done
    echo "moved ${#files[@]} files to $STASH (kept the weights of:${keep% })"
    echo "files that travel: $(tracked_mb) MB; undo with: bash bench/gpu_slim.sh back"
    ;;
  back)
    if [ ! -d "$STASH" ]; then
      echo "error: $STASH does not exist; nothing to move back" >&2
      exit 1
    fi
    count=0
    while IFS= read -r -d '' f; do
      rel=${f#"$STASH"/}
      if [ -e "$rel" ]; then
        echo "error: $rel exists in the checkout and in $STASH; resolve it by hand" >&2
        exit 1
      fi
      mkdir -p "$(dirname "$rel")"
      mv "$f" "$rel"
      count=$((count + 1))
    done < <(find "$STASH" -type f -print0)
    find "$STASH" -depth -type d -empty -delete
    echo "moved $count files back; files that travel: $(tracked_mb) MB"
    git status --short
    ;;
  size)
    extra=0
    if [ $# -gt 0 ]; then
      extra=$(du -cb "$@" | tail -1 | cut -f1)
    fi
    awk -v t="$(tracked_mb)" -v b="$extra" 'BEGIN {
      total = t + b / 1e6
      printf "tracked %.1f MB + carried %.1f MB = %.1f MB: %s the 64 MiB (67.1 MB) limit\n",
        t, b / 1e6, total, (total <= 67.108864 ? "within" : "OVER")
    }'
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$command" ] || [ "$command" = "-h" ] || [ "$command" = "--help" ] || exit 2
    ;;
esac
