#!/bin/sh
# Prints the project version, which meson.build's project() alone states
# (for builds outside meson, such as the static guest helper).
exec sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" "$(dirname "$0")/../meson.build"
