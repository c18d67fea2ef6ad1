"""Simulation support for device simulators, the demo and `sinkwatch simulate`: a runtime package, unlike
`gateway.testing` (test-only services and helpers, imported by no runtime module).

- `pty`: two linked pseudo-terminals made in-process (`python_pty_pair`);
- `rtu_line`: several simulated Modbus RTU devices on one serial port (`RtuLineSimulator`);
- `stream_simulator`: the pacing, endpoints and faults every 10-20 Hz stream simulator shares;
- `turbulence`: one synthetic turbulence field with prescribed covariances for sonic and analyzer simulators;
- `signal`: slowly varying synthetic signals for polled-sensor simulators (`SignalModel`).

Drivers' simulators may import this package; drivers themselves may not (they depend only on `gateway.driver_api`
and `gateway.model`).
"""
