"""Python 2.7: `wstest -m fuzzingserver`, listening on 127.0.0.1 instead of every interface.

Run inside the Python 2 environment that has autobahntestsuite (run.py does this).
"""

import sys

from autobahntestsuite import fuzzing, wstest  # wstest first: it picks Twisted's reactor
from twisted.internet import reactor

_original_listen_ws = fuzzing.listenWS
_original_listen_tcp = reactor.listenTCP


def listen_ws_on_loopback(factory, contextFactory=None, backlog=50, interface=""):
    return _original_listen_ws(factory, contextFactory, backlog, interface="127.0.0.1")


def listen_tcp_on_loopback(port, factory, backlog=50, interface=""):
    return _original_listen_tcp(port, factory, backlog, interface="127.0.0.1")


fuzzing.listenWS = listen_ws_on_loopback
reactor.listenTCP = listen_tcp_on_loopback

if __name__ == "__main__":
    sys.exit(wstest.run())
