#!/usr/bin/env python3
"""idle-conns.py: hold N idle keep-alive HTTP connections to a loopback server (benches/http.sh).

    idle-conns.py PORT COUNT PATH READY_FILE STOP_FILE HOLD_SECONDS

Opens COUNT connections to 127.0.0.1:PORT one after the other; on each it sends one
`GET PATH HTTP/1.1` and reads the whole answer (by Content-Length), so every connection has
served a request and sits idle in keep-alive, as a real client's would. Then it writes
"<opened> <failed>" to READY_FILE and waits until STOP_FILE exists or HOLD_SECONDS have
passed, closes every connection and exits. Opening gives up after 60 s. Loopback only.
"""

import os
import resource
import socket
import sys
import time


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def one_request(sock, request):
    """Sends the request and reads one answer; True when it was complete."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


def main():
    if len(sys.argv) != 7:
        sys.stderr.write(__doc__)
        return 2
    port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ready_file, stop_file, hold = sys.argv[4], sys.argv[5], float(sys.argv[6])
    limit = raise_nofile(count + 64)
    if limit < count + 16:
        sys.stderr.write(f"idle-conns: open files limit {limit} is below {count + 16}\n")
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    socks, failed = [], 0
    deadline = time.monotonic() + 60
    for _ in range(count):
        if time.monotonic() > deadline:
            failed += count - len(socks) - failed
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if one_request(s, request):
                socks.append(s)
            else:
                s.close()
                failed += 1
        except OSError as e:
            failed += 1
            if failed == 1:
                sys.stderr.write(f"idle-conns: {e}\n")
    with open(ready_file + ".tmp", "w") as f:
        f.write(f"{len(socks)} {failed}\n")
    os.rename(ready_file + ".tmp", ready_file)
    until = time.monotonic() + hold
    while time.monotonic() < until and not os.path.exists(stop_file):
        time.sleep(0.05)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
