"""A MongoDB-wire-compatible server (mongoeco, in memory) on 127.0.0.1:PORT, for the
history store's contract tests. Runs under Python 3.13 (mongoeco needs it):

    .venv-mongoeco/bin/python tests/support/mongoeco_server.py PORT
"""

import asyncio
import sys

from mongoeco.wire import AsyncMongoEcoProxyServer


async def main(port: int) -> None:
    server = AsyncMongoEcoProxyServer(host="127.0.0.1", port=port)
    await server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
