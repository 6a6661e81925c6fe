#!/usr/bin/env python3
"""Start moto's server with karpctl's EKS additions (tests/support/moto_ext.py).

    python3 tests/support/moto_server.py --host 127.0.0.1 --port 0

Behaves like `python3 -m moto.server -H HOST -p PORT` (same WSGI app, threaded
werkzeug server), plus:
- MOTO_IAM_LOAD_MANAGED_POLICIES=true, so AWS managed policies such as
  arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy exist;
- --port 0 picks a free port; once the socket is listening, ONE line is
  printed to stdout: `moto_server listening on http://HOST:PORT` (flushed).
  Readiness can also be polled with GET /moto-api/ (moto's dashboard, 200).
- exits 1 with a message on stderr when moto[server] is not importable.
SIGTERM/SIGINT stop it with exit code 0, as moto.server does.
"""

import argparse
import os
import signal
import sys

EXPECTED_MOTO = "5.2.1"  # moto_ext.py hooks into this version's internals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="exit when stdin closes: the test process that started us is gone")
    args = parser.parse_args()

    # Must be set before moto's IAM backend is created (read at backend creation).
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    try:
        import moto
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server
    except ImportError as err:
        sys.exit(f"moto_server.py: cannot import moto's server ({err}).\n"
                 f"Install it with: pip install 'moto[server]=={EXPECTED_MOTO}'")  # exit code 1
    if moto.__version__ != EXPECTED_MOTO:
        print(f"moto_server.py: warning: moto {moto.__version__} installed, "
              f"moto_ext.py was written for {EXPECTED_MOTO}", file=sys.stderr)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import moto_ext

    moto_ext.apply()  # before the first request: moto builds per-service apps lazily

    # Every test makes a fresh account, and each holds its own copy of the ~1500 AWS managed
    # policies: the heap grows by tens of thousands of objects per test, and the collector's
    # full passes over it were a tenth of the emulator's time. Nothing here makes cycles that
    # must be freed early; the threshold is the only change.
    if os.environ.get("KARPCTL_MOTO_GC") != "default":
        import gc

        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)

    # What werkzeug's run_simple (used by moto.server) does, minus the reloader,
    # but binding first so the real port is known when --port is 0.
    server = make_server(args.host, args.port, DomainDispatcherApplication(create_backend_app),
                         threaded=True)
    # moto.server exports the port; some services build URLs to themselves from it.
    os.environ.setdefault("MOTO_PORT", str(server.server_port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    # One access-log line per request drowns the test output; errors still show.
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if args.exit_with_stdin:
        # Test binaries cannot run destructors for statics, so the pipe is the only signal
        # that reliably fires when they exit (also on a crash or SIGKILL).
        import threading

        def watch_stdin():
            sys.stdin.read()
            os._exit(0)

        threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"moto_server listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
