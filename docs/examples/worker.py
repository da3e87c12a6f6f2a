#!/usr/bin/env python3
"""A hearth worker in Python: MDP/0.1 (ZeroMQ RFC 7) over pyzmq, no hearth code.

Serves `py.upper` (the reply is the request body in upper case) on every broker given:
    python3 worker.py tcp://hearth-a:5555 tcp://hearth-b:5555
--heartbeat must be the brokers' --heartbeat (2.5 s by default). Frames: docs/protocol.md.
"""
import argparse
import signal
import sys
import time

import zmq

MDPW = b"MDPW01"
READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"
LIVENESS = 3  # heartbeats a broker may miss before we reconnect

args = argparse.ArgumentParser()
args.add_argument("brokers", nargs="+", help="broker frontends, e.g. tcp://hearth-a:5555")
args.add_argument("--service", default="py.upper")
args.add_argument("--heartbeat", type=float, default=2.5, help="seconds")
args = args.parse_args()
ctx = zmq.Context()
sockets, heard = {}, {}


def connect(broker, why=""):
    """A fresh DEALER for each (re)connection, then READY."""
    if broker in sockets:
        print(f"worker.py: {broker} {why}: reconnecting", file=sys.stderr, flush=True)
        sockets[broker].close(linger=0)
    sockets[broker] = ctx.socket(zmq.DEALER)
    sockets[broker].connect(broker)
    sockets[broker].send_multipart([b"", MDPW, READY, args.service.encode()])
    heard[broker] = time.monotonic()


def stop(*_):
    """Say goodbye, so that the broker gives our requests to other workers at once."""
    for s in sockets.values():
        s.send_multipart([b"", MDPW, DISCONNECT])
        s.close(linger=500)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
for broker in args.brokers:
    connect(broker)
next_beat = time.monotonic() + args.heartbeat
while True:
    poller = zmq.Poller()
    for s in sockets.values():
        poller.register(s, zmq.POLLIN)
    ready = dict(poller.poll(max(0, next_beat - time.monotonic()) * 1000))
    for broker in args.brokers:
        s = sockets[broker]
        if s in ready:
            frames = s.recv_multipart()
            heard[broker] = time.monotonic()
            if frames[:2] != [b"", MDPW] or len(frames) < 3:
                continue  # not MDP/0.1: ignore it
            if frames[2] == REQUEST:  # "", MDPW01, 0x02, client, "", body...
                client, body = frames[3], frames[5:]
                s.send_multipart([b"", MDPW, REPLY, client, b"", b"".join(body).upper()])
            elif frames[2] == DISCONNECT:
                connect(broker, "sent DISCONNECT")
        elif time.monotonic() - heard[broker] > LIVENESS * args.heartbeat:
            connect(broker, f"silent for {LIVENESS} heartbeats")
    if time.monotonic() >= next_beat:  # also while busy: no request blocks this loop
        for s in sockets.values():
            s.send_multipart([b"", MDPW, HEARTBEAT])
        next_beat = time.monotonic() + args.heartbeat
