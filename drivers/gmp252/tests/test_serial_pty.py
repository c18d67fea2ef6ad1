"""The PTY pair helpers this driver's integration tests stand on (gateway/testing/serial_pty.py,
gateway/simulation/pty.py)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import serial

from gateway.simulation import pty
from gateway.testing import serial_pty


def _socat(tmp_path: Path) -> contextlib.AbstractContextManager[tuple[str, str]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    return serial_pty.socat_pty_pair(tmp_path / "not-yet-created")


def _python(tmp_path: Path) -> contextlib.AbstractContextManager[tuple[str, str]]:
    return pty.python_pty_pair(tmp_path / "links")


@pytest.mark.integration
@pytest.mark.parametrize("make_pair", [_socat, _python], ids=["socat", "python"])
def test_bytes_cross_in_both_directions_and_links_go_away(
    tmp_path: Path, make_pair: Callable[[Path], contextlib.AbstractContextManager[tuple[str, str]]]
) -> None:
    payload = bytes(range(256)) * 4  # every byte value: raw mode must not translate CR/LF or eat ^C/^S
    with make_pair(tmp_path) as (path_a, path_b):
        with serial.Serial(path_a, 19200, timeout=2) as a, serial.Serial(path_b, 19200, timeout=2) as b:
            a.write(payload)
            assert b.read(len(payload)) == payload
            b.write(payload[::-1])
            assert a.read(len(payload)) == payload[::-1]
        # Reopening one end (a driver reconnecting) keeps the pair working.
        with serial.Serial(path_a, 19200, timeout=2) as a, serial.Serial(path_b, 19200, timeout=2) as b:
            a.write(b"again")
            assert b.read(5) == b"again"
    assert not Path(path_a).is_symlink() and not Path(path_b).is_symlink()


def test_missing_socat_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serial_pty.shutil, "which", lambda name: None)
    pair = serial_pty.socat_pty_pair(tmp_path)
    with pytest.raises(serial_pty.PtyPairError, match=r"install socat \(Debian package socat\)"):
        pair.__enter__()
