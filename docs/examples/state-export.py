#!/usr/bin/env python3
"""Export hearth's state model to a file, or import such a file, while the brokers run.

    python3 state-export.py export tcp://hearth-a:5555 tcp://hearth-b:5555 > state.bencode
    python3 state-export.py import tcp://hearth-a:5555 tcp://hearth-b:5555 < state.bencode

The file is the `state.snapshot` reply: {entries: {key: {seq, value}}, seq} in Bencode, every
key at one moment. Import writes the values with `state.set`, in batches of at most 1000
keys and 512 KiB, each with its own write id, so that a batch resent to the other broker
is applied once. It keeps the values, not the seqs (the writes take new ones) nor TTLs
(a snapshot does not carry them). MDP/0.1 over pyzmq only; the frames are in
docs/protocol.md.
"""
import os
import sys

import zmq


def bdecode(data, i=0):
    """The Bencode value at data[i:] and the index after it."""
    kind = data[i : i + 1]
    if kind == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if kind in (b"l", b"d"):
        items, i = [], i + 1
        while data[i : i + 1] != b"e":
            item, i = bdecode(data, i)
            items.append(item)
        return (items if kind == b"l" else dict(zip(items[::2], items[1::2]))), i + 1
    colon = data.index(b":", i)
    end = colon + 1 + int(data[i:colon])
    return data[colon + 1 : end], end


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(map(bencode, v)) + b"e"
    return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"


def call(ctx, brokers, service, frames, attempts=4, timeout_ms=2500):
    """The Lazy Pirate pattern: a fresh DEALER per attempt, the next broker after a timeout."""
    for attempt in range(attempts):
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.connect(brokers[attempt % len(brokers)])
        s.send_multipart([b"", b"MDPC01", service] + frames)
        if s.poll(timeout_ms):
            reply, _ = bdecode(s.recv_multipart()[3])
            s.close()
            if isinstance(reply, dict) and list(reply) == [b"error"]:
                sys.exit(f"{service.decode()}: {reply[b'error'].decode(errors='replace')}")
            return reply
        s.close()
    sys.exit(f"{service.decode()}: no broker answered")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("export", "import"):
        sys.exit(__doc__)
    ctx, brokers = zmq.Context(), sys.argv[2:]
    if sys.argv[1] == "export":
        snapshot = call(ctx, brokers, b"state.snapshot", [b"le"])
        sys.stdout.buffer.write(bencode(snapshot))
        print(f"exported {len(snapshot[b'entries'])} keys at seq {snapshot[b'seq']}", file=sys.stderr)
        return
    snapshot, _ = bdecode(sys.stdin.buffer.read())
    batch, size, seq = {}, 0, None
    entries = sorted(snapshot[b"entries"].items())
    for n, (key, entry) in enumerate(entries, 1):
        batch[key] = {b"value": entry[b"value"]}  # the entry form stores any value as it is
        size += len(key) + len(bencode(entry[b"value"])) + 16
        if len(batch) == 1000 or size > 512 * 1024 or n == len(entries):
            write_id = os.urandom(16)  # the same id on every attempt of this batch
            seq = call(ctx, brokers, b"state.set", [bencode(batch), write_id])[b"seq"]
            batch, size = {}, 0
    print(f"imported {len(entries)} keys, model seq now {seq}", file=sys.stderr)


if __name__ == "__main__":
    main()
