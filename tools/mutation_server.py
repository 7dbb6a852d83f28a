"""Run each mutant's tests in a process forked from one that has already imported the test stack.

    python tools/mutation_server.py SOCKET        # started by tools/mutation.sh, one per job
    python tools/mutation_server.py --run SOCKET DIR PYTEST_ARGS...   # cosmic-ray's test command

Starting Python, JAX, optax, hypothesis and pytest costs seconds, and cosmic-ray starts the test
command once per mutant. The server imports them once and forks a child per request; the child
imports jaxnn from DIR (the copy cosmic-ray has just mutated) and runs pytest there. Nothing in the
server touches an XLA backend, so no runtime thread exists when it forks (JAX is not fork-safe once
its runtime has started). If the client is killed (cosmic-ray's timeout), the child is killed too.
"""

import ctypes
import os
import select
import signal
import socket
import sys


def _die_with_parent():
    """On Linux, the child is killed when the server is (a stopped run leaves no tests running)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve(path):
    import hypothesis  # noqa: F401
    import jax
    import jax.numpy  # noqa: F401
    import numpy  # noqa: F401
    import optax  # noqa: F401
    import pytest

    assert not jax._src.xla_bridge._backends, "the server must not start an XLA backend before forking"
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        conn, _ = server.accept()
        request = b""
        while not request.endswith(b"\n") and (chunk := conn.recv(1 << 16)):
            request += chunk
        if not request.endswith(b"\n"):
            conn.close()
            continue
        request = request[:-1].decode().split("\0")
        directory, args = request[0], request[1:]
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            # A shell starts a background job with SIGINT ignored, and Python then installs no handler:
            # the tests that press Ctrl-C need KeyboardInterrupt.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            server.close()
            conn.close()
            os.chdir(directory)
            sys.path.insert(0, directory)
            log = os.open(os.environ.get("MUTATION_CHILD_LOG", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(log, 1)
            os.dup2(log, 2)
            # hypothesis' pytest plugin was imported here before pytest could rewrite its asserts: harmless.
            os._exit(int(pytest.main(["-W", "ignore::pytest.PytestAssertRewriteWarning", *args])))
        status = None
        while status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(code)
                break
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(1):  # the client is gone: cosmic-ray's timeout
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -9
        try:
            conn.sendall(str(status).encode())
        except OSError:
            pass
        conn.close()


def run(path, directory, args):
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    client.sendall("\0".join([directory, *args]).encode() + b"\n")
    reply = b""
    while chunk := client.recv(64):
        reply += chunk
    status = int(reply)
    sys.exit(status if 0 <= status < 256 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "--run":
        run(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        serve(sys.argv[1])
