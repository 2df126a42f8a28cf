#!/bin/sh
# The version of meson.build's project() is what the binaries and the
# installed man pages say, and no source file states another.
# usage: t-version.sh VERSION VIRTFSD VIRTFS_MOUNT MANDIR SRCDIR
v=$1 virtfsd=$2 mount=$3 mandir=$4 src=$5
n=0
check() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
echo "1..7"
out=$("$virtfsd" --version 2>&1)
[ "$out" = "virtfsd $v (9P2000.L)" ]; check $? "virtfsd --version: $out"
out=$("$mount" --version 2>&1)
[ "$out" = "virtfs-mount $v" ]; check $? "virtfs-mount --version: $out"
for m in virtfsd.8 virtfs.1 virtfs-mount.8; do
    grep -q "^\.TH .*\"virtfs $v\"" "$mandir/$m"; check $? "$m .TH says virtfs $v"
done
[ "$(sh "$src/scripts/version.sh")" = "$v" ]
check $? "scripts/version.sh prints $v"
# No C file, man page or doc repeats the version (the .TH lines have @VERSION@).
hits=$(cd "$src" && git grep -nF "$v" -- '*.c' '*.h' 'man/' 'docs/' 'README.md' 2>/dev/null)
[ -z "$hits" ]; check $? "no source states the version itself${hits:+: $hits}"
