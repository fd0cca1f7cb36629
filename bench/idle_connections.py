#!/usr/bin/python3
# bench/idle_connections.py TEND N: starts `tend run` (default settings:
# max_connections 1024) on a free 127.0.0.1 port, opens N idle TCP
# connections (no bytes, no token), then times 20 GET /healthz and counts
# the server's descriptors and log lines. Figures only; never pass/fail.
# N is bounded by this process's descriptor limit (raised to the hard one).
import os, resource, socket, subprocess, sys, tempfile, time

tend, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n = min(n, hard - 100)
work = tempfile.mkdtemp()
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
with open(os.path.join(work, "tend.lua"), "w") as f:
    f.write('return { listen = "127.0.0.1:%d", channels = { sms = { type = "file" } } }\n' % port)
log = open(os.path.join(work, "log"), "w+")
env = dict(os.environ, TEND_API_TOKEN="bench")
server = subprocess.Popen([tend, "run", work], stderr=log, env=env)

def healthz():
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    d = s.recv(4096)
    s.close()
    return b"200 OK" in d, time.time() - t

try:
    for i in range(100):
        try:
            if healthz()[0]:
                break
        except OSError:
            time.sleep(0.1)
    idle, failed, t0 = [], 0, time.time()
    for i in range(n):
        try:
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        except OSError:
            failed += 1
    opened = time.time() - t0
    time.sleep(0.5)
    lat = sorted(healthz()[1] for i in range(20))
    fds = len(os.listdir("/proc/%d/fd" % server.pid))
    log.flush()
    lines = sum(1 for _ in open(log.name))
    print("idle connections: %d opened in %.1f s (%d failed); tend holds %d descriptors; "
          "/healthz x20 median %.1f ms, max %.1f ms; %d log lines"
          % (len(idle), opened, failed, fds, lat[10] * 1e3, lat[-1] * 1e3, lines))
    for s in idle:
        s.close()
finally:
    server.terminate()
    server.wait(timeout=30)
    subprocess.call(["rm", "-rf", work])
