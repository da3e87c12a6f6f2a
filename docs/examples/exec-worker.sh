#!/bin/sh
# A command for `hearth-worker --exec`: hearth-worker runs it once per request with the
# request body on stdin and replies with what it prints on stdout.
#
#   hearth-worker --broker tcp://hearth-a:5555 --broker tcp://hearth-b:5555 \
#     --service home.info --exec '/usr/local/lib/hearth/exec-worker.sh'
#   hearth --broker tcp://hearth-a:5555 --broker tcp://hearth-b:5555 call home.info temp
#
# The request is one word:
#   ping     pong
#   uptime   seconds since this machine booted
#   temp     the temperature of TEMP_FILE in tenths of a degree (215 is 21.5 °C);
#            TEMP_FILE is the first argument, by default the first thermal zone
# Anything else is answered with hearth's error reply, the Bencode dict {error: "..."}.
# A command that fails (exit status not 0) needs no such care: hearth-worker answers
# {error: "exec: exited with status N: <its stderr>"} for it.
set -eu
export LC_ALL=C # so that ${#text} counts bytes, as Bencode does
temp_file=${1:-/sys/class/thermal/thermal_zone0/temp}

bencode_error() { # {error: TEXT}: d 5:error <length>:<text> e
    printf 'd5:error%d:%se' "${#1}" "$1"
}

request=$(tr -d ' \t\r\n')
case $request in
ping) printf 'pong' ;;
uptime)
    read -r seconds _ </proc/uptime
    printf '%s' "${seconds%.*}"
    ;;
temp)
    if ! [ -r "$temp_file" ]; then
        echo "no temperature sensor at $temp_file" >&2
        exit 1
    fi
    read -r millidegrees <"$temp_file"
    printf '%d' $((millidegrees / 100))
    ;;
*) bencode_error "unknown request \"$request\" (ping, uptime, temp)" ;;
esac
