#!/usr/bin/env python3
"""Small admin-API client for bench/run.sh (stdlib only).

  admin.py free-ports N
      print N free TCP ports on 127.0.0.1 (held open together, so they are distinct)
  admin.py routes  --admin HOST:PORT --key KEY --upstream-port P --from A --to B [--concurrency 8]
                   [--plugins]
      PUT routes A..B-1 (alternating exact `/bench/e<i>` and prefix `/bench/p<i>/*` URIs,
      each with its own inline upstream), over keep-alive connections; with --plugins each route
      also runs three built-in Wasm plugins (proxy-rewrite, response-rewrite, limit-count) with a
      config of its own
  admin.py swap    --admin HOST:PORT --key KEY --route-id ID --uri URI --upstreams a,b
                   --count 100 --over SECONDS
      re-point one route alternately at the given upstream ids, COUNT times spread over SECONDS;
      prints one JSON line with the number of admin errors and the PUT latencies
  admin.py plugin-swap --admin HOST:PORT --key KEY --name NAME --files a.wasm,b.wasm
                   --count 20 --over SECONDS
      re-upload the Wasm plugin NAME alternately from the given files, COUNT times spread over
      SECONDS; prints the same JSON line as `swap`
"""
import argparse
import http.client
import json
import socket
import sys
import threading
import time


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


class Admin:
    def __init__(self, addr, key):
        host, port = addr.rsplit(":", 1)
        self.host, self.port, self.key = host, int(port), key
        self.conn = None

    def put(self, path, body, content_type="application/json"):
        """PUT a JSON value, or raw bytes with the given content type."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"X-API-KEY": self.key, "Content-Type": content_type}
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("PUT", path, body=data, headers=headers)
                resp = self.conn.getresponse()
                text = resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"PUT {path}: HTTP {resp.status}: {text[:300]!r}")
                return
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise


def route_plugins(i):
    """Three Wasm plugins whose configs differ per route, so none can be shared between routes."""
    return {
        "proxy-rewrite": {"headers": {"set": {"X-Bench-Route": f"r{i}"}}},
        "response-rewrite": {"headers": {"set": {"X-Bench-Served-By": f"r{i}"}}},
        "limit-count": {"count": 1_000_000 + i, "time_window": 60, "key_type": "var",
                        "key": "remote_addr", "rejected_code": 429},
    }


def route_body(i, upstream_port, plugins=False):
    uri = f"/bench/e{i}" if i % 2 == 0 else f"/bench/p{i}/*"
    body = {
        "uri": uri,
        "upstream": {
            "type": "roundrobin",
            "nodes": {f"127.0.0.1:{upstream_port}": 1},
            "keepalive_pool": {"size": 320},
        },
    }
    if plugins:
        body["plugins"] = route_plugins(i)
    return body


def put_routes(args):
    ids = list(range(args.start, args.end))
    lock = threading.Lock()
    errors = []

    def worker():
        admin = Admin(args.admin, args.key)
        while True:
            with lock:
                if not ids or errors:
                    return
                i = ids.pop()
            try:
                admin.put(f"/apisix/admin/routes/bench{i}",
                          route_body(i, args.upstream_port, args.plugins))
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"admin.py routes: {len(errors)} failed PUTs, first: {errors[0]}")


def timed_puts(args, make_put):
    """Run make_put(n) -> (path, body, content_type) COUNT times spread over OVER seconds; print
    one JSON line with the admin errors and the PUT latencies."""
    admin = Admin(args.admin, args.key)
    interval = args.over / args.count
    errors, latencies = 0, []
    start = time.monotonic()
    for n in range(args.count):
        target = start + n * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        path, body, content_type = make_put(n)
        t0 = time.monotonic()
        try:
            admin.put(path, body, content_type)
        except Exception as e:  # noqa: BLE001
            errors += 1
            print(f"swap {n}: {e}", file=sys.stderr)
        latencies.append((time.monotonic() - t0) * 1e6)
    latencies.sort()
    print(json.dumps({
        "swaps": args.count,
        "admin_errors": errors,
        "put_p50_us": round(latencies[len(latencies) // 2]),
        "put_max_us": round(latencies[-1]),
        "elapsed_s": round(time.monotonic() - start, 3),
    }))


def swap(args):
    """Re-point a route alternately at the given upstream ids."""
    upstreams = args.upstreams.split(",")
    timed_puts(args, lambda n: (f"/apisix/admin/routes/{args.route_id}",
                                {"uri": args.uri, "upstream_id": upstreams[n % len(upstreams)]},
                                "application/json"))


def plugin_swap(args):
    """Re-upload a Wasm plugin alternately from the given component files."""
    blobs = []
    for path in args.files.split(","):
        with open(path, "rb") as f:
            blobs.append(f.read())
    timed_puts(args, lambda n: (f"/apisix/admin/wasm_plugins/{args.name}",
                                blobs[n % len(blobs)], "application/wasm"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    fp = sub.add_parser("free-ports")
    fp.add_argument("n", type=int)
    r = sub.add_parser("routes")
    s = sub.add_parser("swap")
    w = sub.add_parser("plugin-swap")
    for q in (r, s, w):
        q.add_argument("--admin", required=True)
        q.add_argument("--key", required=True)
    r.add_argument("--upstream-port", type=int, required=True)
    r.add_argument("--from", dest="start", type=int, required=True)
    r.add_argument("--to", dest="end", type=int, required=True)
    r.add_argument("--concurrency", type=int, default=8)
    r.add_argument("--plugins", action="store_true")
    s.add_argument("--route-id", required=True)
    s.add_argument("--uri", required=True)
    s.add_argument("--upstreams", required=True)
    s.add_argument("--count", type=int, default=100)
    s.add_argument("--over", type=float, required=True)
    w.add_argument("--name", required=True)
    w.add_argument("--files", required=True)
    w.add_argument("--count", type=int, default=20)
    w.add_argument("--over", type=float, required=True)
    args = p.parse_args()
    if args.cmd == "free-ports":
        free_ports(args.n)
    elif args.cmd == "routes":
        put_routes(args)
    elif args.cmd == "plugin-swap":
        plugin_swap(args)
    else:
        swap(args)


if __name__ == "__main__":
    main()
