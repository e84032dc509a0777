#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `make demo` without root (as root it runs `holdfast drill`, which includes a vault round trip):
# the vault end to end on a scratch tree.
# Makes a sample tree (a few hundred files of every common kind, a few MB), then runs
# init, backup, changes some files, backup again, restore, check --read-data, and compares the
# restored tree with the source (diff -r and a stat comparison). Prints every step with its
# time and ends with a one-line verdict; exits non-zero on any failure.
#
# Environment: HOLDFAST (the binary; default build/src/cli/holdfast), HOLDFAST_DEMO_DIR (the
# scratch folder; default a new /tmp/holdfast-demo.XXXXXX), HOLDFAST_DEMO_KEEP=1 keeps it.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
hf=${HOLDFAST:-$root/build/src/cli/holdfast}
[[ "$hf" == /* ]] || hf=$root/$hf

if [[ -n "${HOLDFAST_DEMO_DIR:-}" ]]; then
        work=$HOLDFAST_DEMO_DIR
        mkdir -p "$work" || exit 1
        if [[ -n "$(ls -A "$work")" ]]; then
                echo "demo: $work is not empty; give an empty or new folder" >&2
                exit 1
        fi
else
        work=$(mktemp -d /tmp/holdfast-demo.XXXXXX) || exit 1
fi
src=$work/source
vault=$work/vault
target=$work/restore
logs=$work/logs
mkdir -p "$logs"

# The demo's own vault password; never reuse it.
export HOLDFAST_PASSWORD=holdfast-demo-password
unset HOLDFAST_PASSWORD_FILE HOLDFAST_REPOSITORY RESTIC_REPOSITORY RESTIC_PASSWORD \
      RESTIC_PASSWORD_FILE

t_all=${EPOCHREALTIME/./}
n=0
failed=""

# step TITLE CMD...: runs CMD with its output in a log; prints the title, time and result.
step() {
        local title=$1 t0=${EPOCHREALTIME/./} rc=0 us log
        shift
        n=$((n + 1))
        log=$logs/$(printf '%02d' "$n").log
        "$@" >"$log" 2>&1 || rc=$?
        us=$((${EPOCHREALTIME/./} - t0))
        if ((rc == 0)); then
                printf '  %2d. %-46s %4d.%02ds  ok\n' "$n" "$title" $((us / 1000000)) \
                        $((us / 10000 % 100))
                return 0
        fi
        printf '  %2d. %-46s %4d.%02ds  FAILED (exit %d)\n' "$n" "$title" $((us / 1000000)) \
                $((us / 10000 % 100)) "$rc"
        sed 's/^/      | /' "$log" | tail -n 30
        failed=$title
        return 1
}

finish() {
        local us=$((${EPOCHREALTIME/./} - t_all))
        local took
        took=$(printf '%d.%01ds' $((us / 1000000)) $((us / 100000 % 10)))
        if [[ -z "$failed" ]]; then
                echo "holdfast demo: PASS: $nfiles entries backed up twice, restored and verified" \
                     "identical in $took"
                if [[ "${HOLDFAST_DEMO_KEEP:-0}" == 1 ]]; then
                        echo "  (kept $work)"
                else
                        rm -rf "$work"
                fi
                exit 0
        fi
        echo "holdfast demo: FAIL at \"$failed\" after $took (scratch folder kept: $work)"
        exit 1
}

make_tree() {
        local i d
        mkdir -p "$src"
        # Text: 240 small files in 12 folders, some nested.
        for d in $(seq -w 1 12); do
                mkdir -p "$src/docs/part-$d/notes"
                for i in $(seq -w 1 20); do
                        printf 'Document %s/%s\n%s\n' "$d" "$i" "$(seq -s ' ' 1 $((10#$i * 7)))" \
                                >"$src/docs/part-$d/file-$i.txt"
                done
                printf 'notes for part %s\n' "$d" >"$src/docs/part-$d/notes/README"
        done
        # Binary: 30 files of 1 KiB to 240 KiB, one of 3 MiB (several chunks), a duplicate.
        mkdir -p "$src/data"
        for i in $(seq -w 1 30); do
                head -c $((10#$i * 8192)) /dev/urandom >"$src/data/blob-$i.bin"
        done
        head -c $((3 * 1024 * 1024)) /dev/urandom >"$src/data/large.bin"
        cp "$src/data/blob-07.bin" "$src/data/copy-of-blob-07.bin"
        # Empty file and folders, modes, links, a fifo, odd names.
        : >"$src/empty-file"
        mkdir -p "$src/empty-folder/nested"
        printf '#!/bin/sh\necho hello from the demo\n' >"$src/run.sh"
        chmod 0755 "$src/run.sh"
        printf 'secret\n' >"$src/private"
        chmod 0600 "$src/private"
        ln -s docs/part-01/file-01.txt "$src/link-to-file"
        ln -s docs "$src/link-to-folder"
        ln -s nowhere/at/all "$src/dangling-link"
        ln "$src/data/blob-01.bin" "$src/data/hardlink-to-blob-01.bin"
        mkfifo "$src/pipe.fifo"
        printf 'spaces and UTF-8\n' >"$src/name with spaces – ünïcödé.txt"
        printf 'not UTF-8\n' >"$src/"$'latin1-\xe9t\xe9.txt'
        touch -d '2021-06-01 12:00:00.123456789' "$src/docs/part-01/file-01.txt"
}

change_tree() {
        printf 'changed after the first backup\n' >>"$src/docs/part-02/file-03.txt"
        printf 'changed too\n' >"$src/docs/part-05/file-10.txt"
        head -c 50000 /dev/urandom >"$src/data/blob-04.bin"
        dd if=/dev/urandom of="$src/data/large.bin" bs=4096 count=1 seek=100 conv=notrunc \
                status=none
        rm "$src/docs/part-12/file-20.txt" "$src/data/blob-30.bin"
        mkdir -p "$src/added"
        printf 'new file %d\n' 1 2 3 | split -l 1 - "$src/added/new-"
        chmod 0640 "$src/docs/part-03/file-01.txt"
}

# Type, mode, size, mtime (ns), owner and link target of every entry, sorted by path.
stat_list() {
        (cd "$1" && find . -printf '%P\t%y\t%m\t%s\t%T@\t%U:%G\t%l\n' | LC_ALL=C sort) |
                awk -F'\t' 'BEGIN { OFS = "\t" } $2 == "d" { $4 = "-" } { print }'
}

compare_trees() {
        local restored=$target$src
        [[ -d "$restored" ]] || { echo "restore did not create $restored"; return 1; }
        diff -r --no-dereference -x '*.fifo' "$src" "$restored" || return 1
        diff <(stat_list "$src") <(stat_list "$restored") || return 1
        echo "identical: $(stat_list "$src" | wc -l) entries"
}

echo "holdfast demo in $work"
echo "  binary: $hf"
if [[ ! -x "$hf" ]]; then
        echo "holdfast demo: FAIL: no holdfast binary at $hf (run make)"
        exit 1
fi

step "make a sample tree" make_tree || finish
nfiles=$(find "$src" | wc -l)
echo "      ($nfiles entries, $(du -sh "$src" | cut -f1))"
step "holdfast init" "$hf" -r "$vault" init || finish
step "holdfast backup (first)" "$hf" -r "$vault" backup --tag demo "$src" || finish
step "change some files" change_tree || finish
nfiles=$(find "$src" | wc -l)
step "holdfast backup (second)" "$hf" -r "$vault" backup --tag demo "$src" || finish
step "holdfast snapshots" "$hf" -r "$vault" snapshots || finish
sed 's/^/      /' "$logs/$(printf '%02d' "$n").log"
step "holdfast restore latest" "$hf" -r "$vault" restore latest --target "$target" || finish
step "holdfast check --read-data" "$hf" -r "$vault" check --read-data || finish
step "compare restored tree with the source" compare_trees || finish
finish
