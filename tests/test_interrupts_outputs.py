"""Interrupts and failed writes lose nothing and leave nothing: simulate, atomic outputs, stale temporaries."""

from __future__ import annotations

import errno
import os
import signal
import socket

import pytest
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.data import io
from caloforge.data.outputs import atomic_dir, atomic_path, host_name, remove_stale_temporaries
from caloforge.errors import OutputPathError
from caloforge.refsim import simulate_to_file
from caloforge.runtime.interrupts import Interrupted, deferred_interrupts

runner = CliRunner()


def _debris(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_simulate_stops_between_chunks_and_removes_the_temporary(tmp_path, sig):
    out = tmp_path / "x.h5"
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 2:
            signal.raise_signal(sig)  # arrives while the writer is open

    previous = signal.getsignal(sig)
    with pytest.raises(Interrupted) as caught:
        simulate_to_file(out, "ds1-photons", "photon", 2000, seed=1, chunk_size=250, progress=progress)
    assert caught.value.signum == sig
    assert len(calls) == 2  # stopped right after the chunk in flight, not at the end
    assert not out.exists() and _debris(tmp_path) == []
    assert signal.getsignal(sig) is previous


def test_ctrl_c_in_the_cli_exits_130_and_sigterm_143(tmp_path, monkeypatch):
    import caloforge.refsim as refsim

    def interrupted(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(refsim, "simulate_to_file", interrupted)
    result = runner.invoke(app, ["simulate", "-g", "ds1-photons", "-p", "photon", "--n", "10", "-o",
                                 str(tmp_path / "x.h5")])
    assert result.exit_code == 143 and "interrupted" in result.output


def test_second_signal_interrupts_at_once():
    with pytest.raises(Interrupted), deferred_interrupts():
        signal.raise_signal(signal.SIGINT)  # deferred
        signal.raise_signal(signal.SIGINT)  # raises here


def test_full_disk_in_an_atomic_write_is_one_clear_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(OutputPathError, match="no space left"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not target.exists() and _debris(tmp_path) == []
    with pytest.raises(OutputPathError, match="could not write"), atomic_dir(tmp_path / "bundle") as tmp:
        (tmp / "x").write_text("partial")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert _debris(tmp_path) == [] and not (tmp_path / "bundle").exists()


def test_temporaries_of_dead_processes_are_removed_on_the_next_write(tmp_path):
    host = host_name()
    dead = tmp_path / f".x.h5.{host}-999999999-abc123.tmp"  # a pid that cannot exist
    alive = tmp_path / f".x.h5.{host}-{os.getpid()}-def456.tmp"  # a writer still running (this process)
    other_host = tmp_path / ".x.h5.elsewhere-999999999-ghi789.tmp"  # maybe running on another machine
    unrelated = tmp_path / ".y.h5.host-999999999-abc.tmp"
    for path in (dead, alive, other_host, unrelated):
        path.write_bytes(b"partial")
    simulate_to_file(tmp_path / "x.h5", "ds1-photons", "photon", 20, seed=1)
    assert not dead.exists()
    assert alive.exists() and other_host.exists() and unrelated.exists()
    assert len(io.read(tmp_path / "x.h5")) == 20
    assert remove_stale_temporaries(tmp_path / "x.h5") == []
    assert socket.gethostname()  # the host part of the name comes from here
