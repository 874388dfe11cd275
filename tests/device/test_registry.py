import pytest

from accelerators import registry
from accelerators.cpu import CpuPoseBackend


def test_cpu_is_always_available_and_auto_falls_back_to_it(movenet_path, caplog):
    states = registry.probe_all()
    assert states["cpu"].available
    for name, state in states.items():
        assert state.reason, name  # every backend says what it found or why it cannot run
    with caplog.at_level("INFO", logger="wardsight.accelerators"):
        chosen = registry.choose("auto")
    assert chosen == next(n for n in registry.PREFERENCE if n in states and states[n].available)
    assert "auto chose" in caplog.text
    backend = registry.create("cpu", model_path=movenet_path)
    assert isinstance(backend, CpuPoseBackend)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(registry.BackendUnavailableError, match="unknown backend 'tpu9'"):
        registry.choose("tpu9")
