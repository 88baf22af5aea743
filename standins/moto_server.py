"""A moto server on 127.0.0.1 whose CloudFormation creates every resource type this project deploys.

Run: `python -m standins.moto_server [--port N]`; prints `READY <port>` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import sys

from moto.server import ThreadedMotoServer

from standins.cfn_handlers import register
from standins.ports import free_port


def main() -> None:
    """Start the server in the foreground; print `READY <port>` once it listens."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    port = args.port or free_port()
    added = register()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"moto server: CloudFormation handlers added for {', '.join(added)}", file=sys.stderr)
    print(f"READY {port}", flush=True)
    try:
        server._thread.join()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
