"""The ``bis`` source over real ptys, loopback TCP (socket://) and loop://, fed by hand and by the simulator."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from surgbox.clock import Clock
from surgbox.errors import SourceError
from surgbox.types import Reading
from surgbox_ext.bis.simulator import BISSimulator, PtyPort, TcpPort
from surgbox_ext.bis.source import BISSource, parse_request

from test_bis_parser import record  # tests/ is on sys.path (pytest rootdir-relative import)

pytestmark = pytest.mark.timeout(60)


def collect(src: BISSource, n: int, timeout: float = 10.0) -> list[Reading]:
    out: list[Reading] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        r = src.get(0.2)
        if r is not None:
            out.append(r)
    return out


def wait_for(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def pty():
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_pty_readings_and_capture_time(pty):
    master, name = pty
    clock = Clock()
    src = BISSource("bis", url=name)
    src.start(clock)
    try:
        data = record(when="07/03/2015 13:39:45")
        os.write(master, data[:200])  # the record arrives in two pieces...
        time.sleep(0.3)
        assert src.get(0.0) is None
        before = clock.now_ns()
        os.write(master, data[200:])  # ...and is stamped when its last byte arrives
        r = collect(src, 1)[0]
        after = clock.now_ns()
        assert before <= r.capture_ns <= after and after - before < 1_000_000_000
        assert r.kind == "bis" and r.source == "bis"
        assert r.values["BIS"] == 36.2 and r.values["SQI"] == 100.0 and r.values["EMGLOW"] == 26.9 and r.values["SR"] == 0.0
        assert r.channels["2"]["BIS"] == 32.8 and r.device_time.isoformat() == "2015-07-03T13:39:45"
        assert src.stats()["connected"] and src.stats()["parser"]["records"] == 1
    finally:
        src.stop()
    assert BISSource.media == "data"


def test_several_records_in_one_read_all_delivered(pty):
    master, name = pty
    src = BISSource("bis", url=name, main_channel="2")
    src.start(Clock())
    try:
        os.write(master, b"".join(record(when=f"07/03/2015 13:39:{s:02d}") for s in range(10, 20)))
        got = collect(src, 10)
        assert [r.device_time.second for r in got] == list(range(10, 20))
        assert all(r.values["BIS"] == 32.8 for r in got)  # main_channel=2
    finally:
        src.stop()


class LoopbackServer:
    """A plain TCP server on loopback: each accepted client gets ``payloads[k]`` and is closed."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.conns: list[socket.socket] = []

    def serve(self, payload: bytes, then_close: bool = True, linger: float = 0.3) -> None:
        conn, _ = self.sock.accept()
        self.conns.append(conn)
        conn.settimeout(0.5)
        try:
            self.received.append(conn.recv(100))
        except TimeoutError:
            self.received.append(b"")
        conn.sendall(payload)
        time.sleep(linger)
        if then_close:
            conn.close()

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def test_socket_url_reconnects_after_peer_closes():
    server = LoopbackServer()
    src = BISSource("bis", url=f"socket://127.0.0.1:{server.port}", request="D\\r", reconnect_min=0.1)
    t = threading.Thread(target=lambda: (server.serve(record(when="07/03/2015 13:39:45")),
                                         server.serve(record(when="07/03/2015 13:39:50"), then_close=False)))
    t.start()
    src.start(Clock())
    try:
        got = collect(src, 2)
        assert [r.device_time.second for r in got] == [45, 50]
        s = src.stats()
        assert s["connects"] == 2 and s["disconnects"] == 1 and "disconnected" in s["last_error"]
        assert server.received == [b"D\r", b"D\r"]  # the request goes out on every connect
        assert src.error is None and src.running
    finally:
        src.stop()
        t.join()
        server.close()


def test_record_cut_by_disconnect_is_not_glued_to_the_next_connection():
    server = LoopbackServer()
    full = record(when="07/03/2015 13:39:50")
    src = BISSource("bis", url=f"socket://127.0.0.1:{server.port}", reconnect_min=0.1)
    t = threading.Thread(target=lambda: (server.serve(record(when="07/03/2015 13:39:45")[:150]), server.serve(full[40:] + full, then_close=False)))
    t.start()
    src.start(Clock())
    try:
        got = collect(src, 1)
        assert [r.device_time.second for r in got] == [50]
        assert wait_for(lambda: src.stats()["parser"]["partial_records"] >= 1)
        assert src.get(0.3) is None
    finally:
        src.stop()
        t.join()
        server.close()


def test_request_is_resent_periodically():
    server = LoopbackServer()
    chunks: list[bytes] = []

    def serve():
        conn, _ = server.sock.accept()
        server.conns.append(conn)
        conn.settimeout(0.1)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                chunks.append(conn.recv(100))
            except TimeoutError:
                pass

    t = threading.Thread(target=serve)
    t.start()
    src = BISSource("bis", url=f"socket://127.0.0.1:{server.port}", request=b"U", request_interval=0.2)
    src.start(Clock())
    t.join()
    src.stop()
    server.close()
    assert 3 <= b"".join(chunks).count(b"U") <= 7


def test_unopenable_port_fails_start_or_retries_in_background(tmp_path):
    with pytest.raises(SourceError, match="cannot open .*dialout"):
        BISSource("bis", url=str(tmp_path / "ttyNOPE")).start(Clock())
    # require_device=False: start succeeds, and the source connects once the device appears
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    src = BISSource("bis", url=f"socket://127.0.0.1:{port}", require_device=False, reconnect_min=0.1, reconnect_max=0.2)
    src.start(Clock())
    try:
        time.sleep(0.4)
        assert not src.stats()["connected"] and src.running
        with TcpPort.open("127.0.0.1", port) as tcp:
            assert wait_for(lambda: (tcp.accept(), tcp.clients)[1] > 0)
            tcp.write(record())
            assert collect(src, 1)[0].values["BIS"] == 36.2
    finally:
        src.stop()


def test_loop_url():
    # loop:// echoes what the source writes: send a record as the "request"
    src = BISSource("bis", url="loop://", request=record())
    src.start(Clock())
    try:
        assert collect(src, 1)[0].values["BIS"] == 36.2
    finally:
        src.stop()


def test_bad_options_are_clear():
    with pytest.raises(SourceError, match="no url"):
        BISSource("bis")
    with pytest.raises(ValueError, match="parity"):
        BISSource("bis", url="loop://", parity="X")
    assert parse_request("\\x44\\r\\n") == b"D\r\n" and parse_request(None) == b""


def test_simulator_on_pty_with_line_noise_feeds_the_source(tmp_path):
    sim = BISSimulator(rate=50, course_s=20, seed=3, noise=0.3)
    link = tmp_path / "bis"
    written: list[int] = []
    with PtyPort.open(link, sim.header()) as port:
        src = BISSource("bis", url=str(link), queue_size=256)  # collected after the run: keep all
        src.start(Clock())
        stop = threading.Event()
        t = threading.Thread(target=sim.run, args=(port,), kwargs={"duration": 2.0, "stop": stop, "on_record": written.append})
        t.start()
        try:
            t.join()
            got = collect(src, len(written), timeout=3.0)
        finally:
            stop.set()
            src.stop()
    assert not link.exists()  # the symlink goes with the pty
    assert len(written) >= 90 and len(got) >= len(written) - 2
    bis = [r.channels["12"]["BIS"] for r in got]
    # the source delivered exactly the simulator's sequence (a record or two may be cut at the start)
    start = next(i for i in range(5) if sim.channel_values(i)["12"]["BIS"] == bis[0])
    assert bis == [sim.channel_values(i)["12"]["BIS"] for i in range(start, start + len(bis))]
    assert src.stats()["parser"]["nul_bytes"] > 0 and src.stats()["parser"]["corrupt_records"] == 0


def test_simulator_restart_on_same_pty_path_reconnects(tmp_path):
    sim = BISSimulator(rate=20, course_s=30)
    link = tmp_path / "bis"
    src = BISSource("bis", url=str(link), reconnect_min=0.1, reconnect_max=0.3)
    try:
        for round_ in range(2):
            with PtyPort.open(link) as port:
                if round_ == 0:
                    src.start(Clock())
                t = threading.Thread(target=sim.run, args=(port,), kwargs={"duration": 1.0})
                t.start()
                assert len(collect(src, 5, timeout=5.0)) == 5
                t.join()
                # read while the second pty is still open: closing it is a second disconnect,
                # which the source may or may not have seen by the time the block has ended
                stats = src.stats()
        assert stats["connects"] == 2 and stats["disconnects"] == 1
    finally:
        src.stop()


def test_simulator_over_tcp_feeds_socket_url():
    sim = BISSimulator(rate=20, course_s=30)
    with TcpPort.open("127.0.0.1", 0, sim.header()) as tcp:
        host, port = tcp.address
        src = BISSource("bis", url=f"socket://{host}:{port}", reconnect_min=0.1)
        src.start(Clock())
        stop = threading.Event()
        t = threading.Thread(target=sim.run, args=(tcp,), kwargs={"stop": stop})
        t.start()
        try:
            assert len(collect(src, 5)) == 5
            tcp.disconnect_clients()  # the cable is pulled; the server keeps listening
            assert wait_for(lambda: src.stats()["connects"] >= 2, 5.0)
            assert len(collect(src, 3)) == 3
            assert src.stats()["parser"]["headers"] >= 2  # a new client gets the header first
        finally:
            stop.set()
            t.join()
            src.stop()


def test_registered_plugin(default_plugins):
    entry = default_plugins.entry("source", "bis")
    assert entry.unavailable_reason() is None and "BIS" in entry.description
    src = default_plugins.create("source", "bis", name="monitor", url="loop://", baudrate="19200", parity="even")
    assert isinstance(src, BISSource) and src.baudrate == 19200 and src.parity == "E"
