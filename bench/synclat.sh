#!/bin/sh
# The data disk's durable-write floor (bench/synclat.c): pwrite + fdatasync of 1-100 overwritten
# pages, with an fstat before each write, and with the CPU busy. Run it on the disk that holds the
# data folder before judging Bevan's durable create figures against another machine's.
# Usage: bench/synclat.sh [DIR] [ROUNDS]   (defaults: ./data's disk if present, else /tmp; 2000)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$( [ -d data ] && echo data || echo /tmp )}
rounds=${2:-2000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT INT TERM
cc -O2 -std=c11 -Wall -Wextra -Werror "$here/synclat.c" -lpthread -o "$out/synclat"
echo "disk of $dir ($(df -P "$dir" | awk 'NR == 2 {print $1}'), $(uname -sr), $(nproc) CPUs):"
"$out/synclat" "$dir/.bevan-synclat.$$" "$rounds"
