#!/usr/bin/env bash
# Checks that every C source and header under src tools tests bench include
# is formatted as .clang-format says (clang-format --dry-run -Werror).
# Prints one "ok"/"not ok" line per file that fails, then a summary line
# "ok - clang-format: N files" or "not ok - clang-format: N of M files";
# exit status 0 only when every file is clean.
#
#   scripts/check-format.sh            all files
#   scripts/check-format.sh FILE...    only these files
#
# scripts/check.sh runs it as its format tier.
set -u
cd "$(dirname "$0")/.."

cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
    for c in clang-format-14 clang-format; do
        if command -v "$c" > /dev/null; then cf=$c; break; fi
    done
fi
if [ -z "$cf" ]; then
    echo "not ok - clang-format: not installed (apt-get install clang-format)"
    exit 1
fi

if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(git ls-files -- 'src/*.[ch]' 'tools/*.[ch]' \
        'tests/*.[ch]' 'bench/*.[ch]' 'include/*.h')
fi

bad=0
for f in "${files[@]}"; do
    if ! "$cf" --dry-run -Werror --style=file "$f" > /dev/null 2>&1; then
        echo "not ok - clang-format: $f"
        bad=$((bad + 1))
    fi
done
if [ "$bad" = 0 ]; then
    echo "ok - clang-format: ${#files[@]} files"
else
    echo "not ok - clang-format: $bad of ${#files[@]} files differ (clang-format -i FILE shows how)"
    exit 1
fi
