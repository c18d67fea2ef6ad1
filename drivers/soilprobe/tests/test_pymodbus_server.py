"""The driver against a slave that is not ours: pymodbus' serial server on a socat PTY, serving the example values
of each layout (THC-S manual for A, SenseCAP S-Temp&VWC&EC-02 user manual sec. 5.2-5.3 for B), several probes on
one line through the station's RS-485 master, by function 03 and 04."""

from __future__ import annotations

import pytest

from drivers.soilprobe.driver import SoilProbeConfig, SoilProbeDriver
from gateway.driver_api import RtuSerialLine, SerialSettings
from gateway.model import QualityFlag
from gateway.testing.pymodbus_server import pymodbus_rtu_server
from gateway.testing.serial_pty import socat_ptys_or_skip

pytestmark = pytest.mark.integration

# layout A, the example's 31.5 % and -2.3 degC (0xFFE9) and an EC of 124 uS/cm (the example reads only two
# registers), 5 registers (VWC, T, EC, pH/salinity, TDS) at address 1
LAYOUT_A = {0: 0x013B, 1: 0xFFE9, 2: 124, 3: 0, 4: 0}
# layout B, 12.34 degC, 27.50 %, 420 uS/cm, 6 registers at address 2
LAYOUT_B = {0: 0x04D2, 1: 0x0ABE, 2: 0x01A4, 3: 0, 4: 0, 5: 0}


ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")


@pytest.mark.parametrize("function", [3, 4])
def test_two_probes_of_both_layouts_on_one_line(ptys: tuple[str, str], function: int) -> None:
    line = RtuSerialLine(SerialSettings(ptys[1], 9600, 8, "N", 1))
    probes = [SoilProbeDriver(SoilProbeConfig.model_validate(
        {"name": f"soil_{layout}", "port": ptys[1], "address": address, "layout": layout, "function": function,
         "timeout_s": 2.0}), station="st1") for address, layout in ((1, "A"), (2, "B"))]
    for probe in probes:
        probe.attach(line)
    try:
        with pymodbus_rtu_server(ptys[0], {1: LAYOUT_A, 2: LAYOUT_B}, baudrate=9600):
            read = [{r.variable: (r.value, r.qc) for r in probe.poll()} for _ in range(2) for probe in probes]
    finally:
        line.close()
    a = {"SWC": (31.5, QualityFlag.GOOD), "TS": (-2.3, QualityFlag.GOOD), "EC_SOIL": (124.0, QualityFlag.GOOD)}
    b = {"TS": (12.34, QualityFlag.GOOD), "SWC": (27.5, QualityFlag.GOOD), "EC_SOIL": (420.0, QualityFlag.GOOD)}
    assert read == [a, b, a, b]
