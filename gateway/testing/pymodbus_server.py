"""A Modbus slave that is not ours: pymodbus' own serial server on a PTY (or its Modbus TCP server on loopback),
serving fixed register maps.

Our device simulators answer Modbus with our own RTU code (`gateway.driver_api.rtu`), written beside the master
that polls them; a misreading shared by both would pass every test. This server is pymodbus' implementation of the
slave side (its framer, its inter-frame timing, its exception replies for registers outside the map), so the
station's RS-485 master and the drivers are tested against a second implementation as an independent simulator
would drive them. Tests only: the server runs in a thread with its own event loop.

    with pymodbus_rtu_server(port, {240: {0: 0x4000, 1: 0x43CE}}, stopbits=2) as server:
        ...                     # poll the other end of the PTY pair; server.requests counts the frames served
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

#: One device's registers, address -> 16-bit word, answered to function 03 and 04 alike (pymodbus' shared
#: register mode); an address absent here gets exception 02 (illegal data address).
RegisterMap = Mapping[int, int]


def _blocks(registers: Mapping[int, int]) -> list[SimData]:
    """Runs of consecutive addresses as one SimData each, so a gap stays outside the map."""
    blocks: list[SimData] = []
    run: list[int] = []
    for address in sorted(registers):
        if run and address != run[-1] + 1:
            blocks.append(SimData(address=run[0], values=[registers[a] for a in run], datatype=DataType.REGISTERS))
            run = []
        run.append(address)
    if run:
        blocks.append(SimData(address=run[0], values=[registers[a] for a in run], datatype=DataType.REGISTERS))
    return blocks


class PymodbusServer:
    """pymodbus' serial server in a thread (or its Modbus TCP server when `port` is `tcp://127.0.0.1:N`);
    `requests` counts the frames it received (its packet trace)."""

    def __init__(self, port: str, devices: Mapping[int, RegisterMap], *, baudrate: int = 19200, parity: str = "N",
                 stopbits: int = 1) -> None:
        self.port = port
        self.devices = [SimDevice(id=address, simdata=_blocks(registers))
                        for address, registers in devices.items()]
        self.baudrate, self.parity, self.stopbits = baudrate, parity, stopbits
        host, _, number = port.removeprefix("tcp://").rpartition(":")
        self._tcp: tuple[str, int] | None = (host, int(number)) if port.startswith("tcp://") else None
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._server: ModbusSerialServer | ModbusTcpServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pymodbus-server", daemon=True)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.requests += 1
        return data

    def _run(self) -> None:
        async def serve() -> None:
            # the server binds to the running loop when it is made, so it is made here
            server: ModbusSerialServer | ModbusTcpServer
            if self._tcp is not None:
                server = ModbusTcpServer(self.devices, address=self._tcp, trace_packet=self._trace)
            else:
                server = ModbusSerialServer(self.devices, port=self.port, baudrate=self.baudrate, parity=self.parity,
                                            stopbits=self.stopbits, bytesize=8, trace_packet=self._trace)
            self._server = server
            self._ready.set()
            await server.serve_forever()

        self._loop.run_until_complete(serve())

    def start(self) -> PymodbusServer:
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError(f"pymodbus server on {self.port} did not start within 10 s")
        if self._tcp is not None:  # serve_forever binds the socket after the server is made
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    socket.create_connection(self._tcp, timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"pymodbus server on {self.port} did not listen within 10 s") from None
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10.0)
        self._thread.join(10.0)
        self._loop.close()


@contextmanager
def pymodbus_rtu_server(port: str, devices: Mapping[int, RegisterMap], *, baudrate: int = 19200, parity: str = "N",
                        stopbits: int = 1) -> Iterator[PymodbusServer]:
    server = PymodbusServer(port, devices, baudrate=baudrate, parity=parity, stopbits=stopbits).start()
    try:
        yield server
    finally:
        server.stop()
