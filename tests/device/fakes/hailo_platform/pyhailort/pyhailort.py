"""Fake ``hailo_platform.pyhailort.pyhailort``: devices, VDevice and the InferModel API (see the package docstring)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

BBOX_PARAMS = 5


# ---------------------------------------------------------------- exceptions (names as in pyhailort.py)
class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTStreamAborted(HailoRTException):
    pass


class HailoRTStreamAbortedByUser(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


HailoRTPCIeDriverException = HailoRTDriverOperationFailedException


class HailoCommunicationClosedException(HailoRTException):
    pass


# ---------------------------------------------------------------- enums
class FormatType(IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(IntEnum):
    AUTO = 0
    NHWC = 1
    NC = 4
    HAILO_NMS = 9
    HAILO_NMS_WITH_BYTE_MASK = 20
    HAILO_NMS_ON_CHIP = 21
    HAILO_NMS_BY_CLASS = 22
    HAILO_NMS_BY_SCORE = 23


class HailoSchedulingAlgorithm(IntEnum):
    NONE = 0
    ROUND_ROBIN = 1


class HailoStreamInterface(IntEnum):
    PCIe = 0
    INTEGRATED = 1
    ETH = 2
    MIPI = 3


class DeviceArchitectureTypes(IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2
    HAILO15H = 3
    HAILO15L = 4
    HAILO15M = 5
    HAILO10H = 6

    def __str__(self) -> str:
        return self.name


_DTYPES = {FormatType.UINT8: np.dtype(np.uint8), FormatType.UINT16: np.dtype(np.uint16)}
_DTYPES[FormatType.FLOAT32] = np.dtype(np.float32)

# Which chips run a HEF compiled for an architecture (a Hailo-8L HEF also runs on a Hailo-8, not vice versa).
_RUNS_ON = {
    DeviceArchitectureTypes.HAILO8: {DeviceArchitectureTypes.HAILO8, DeviceArchitectureTypes.HAILO8_A0},
    DeviceArchitectureTypes.HAILO8L: {DeviceArchitectureTypes.HAILO8L, DeviceArchitectureTypes.HAILO8},
}


def _status(code: int, name: str) -> HailoRTException:
    return HailoRTException(f"libhailort failed with error: {code} ({name})")


# ------------------------------------------------------------- the simulated machine (driven by hailo_platform._fake)
@dataclass
class _World:
    devices: list[Any] = field(default_factory=list)  # _fake.FakeDeviceSpec
    hefs: dict[str, Any] = field(default_factory=dict)  # path -> _fake.FakeHef
    hef_contents: dict[str, Any] = field(default_factory=dict)  # sha256 of a HEF file's bytes -> _fake.FakeHef
    held: dict[str, VDevice] = field(default_factory=dict)  # device id -> VDevice holding it
    callback_errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_WORLD = _World()


def _find_hef(path: str) -> Any:
    """The HEF at ``path``: registered by path, else by the file's bytes (HailoRT reads the HEF from the file, so a
    copy of a HEF, e.g. in an OTA model slot, is the same HEF). None when neither knows it."""
    hef = _WORLD.hefs.get(path)
    if hef is not None or not _WORLD.hef_contents:
        return hef
    try:
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None
    return _WORLD.hef_contents.get(digest)


# ---------------------------------------------------------------- device and health
@dataclass(frozen=True)
class TemperatureInfo:
    ts0_temperature: float
    ts1_temperature: float
    sample_count: int


@dataclass(frozen=True)
class BoardInformation:
    protocol_version: int
    firmware_version: str
    logger_version: int
    board_name: str
    is_release: bool
    device_architecture: DeviceArchitectureTypes
    serial_number: str
    part_number: str
    product_name: str

    def __str__(self) -> str:
        def na(v: str) -> str:
            return v or "<N/A>"

        return (
            f"Control Protocol Version: {self.protocol_version}\nFirmware Version: {self.firmware_version}\n"
            f"Logger Version: {self.logger_version}\nBoard Name: {self.board_name}\n"
            f"Device Architecture: {self.device_architecture}\nSerial Number: {na(self.serial_number)}\n"
            f"Part Number: {na(self.part_number)}\nProduct Name: {na(self.product_name)}\n"
        )


class Control:
    def __init__(self, device: Device) -> None:
        self._device = device

    def identify(self) -> BoardInformation:
        spec = self._device._spec_checked()
        return BoardInformation(
            protocol_version=2,
            firmware_version=spec.firmware_version,
            logger_version=0,
            board_name=spec.board_name,
            is_release=True,
            device_architecture=spec.architecture,
            serial_number=spec.serial_number,
            part_number=spec.part_number,
            product_name=spec.product_name,
        )

    def get_chip_temperature(self) -> TemperatureInfo:
        spec = self._device._spec_checked()
        spec.temperature_reads += 1
        return TemperatureInfo(spec.ts0_temperature, spec.ts1_temperature, spec.temperature_reads)


class Device:
    def __init__(self, device_id: str | None = None) -> None:
        specs = _WORLD.devices
        if not specs:
            raise HailoRTException("HailoRT device not found in the system")
        if device_id is None:
            spec = specs[0]
        else:
            found = [s for s in specs if s.device_id == device_id]
            if not found:
                raise _status(61, "HAILO_NOT_FOUND")
            spec = found[0]
        self._spec: Any = spec
        self._released = False
        self.control = Control(self)

    @classmethod
    def scan(cls) -> list[str]:
        return [s.device_id for s in _WORLD.devices]

    @property
    def device_id(self) -> str:
        return str(self._spec.device_id)

    def _spec_checked(self) -> Any:
        if self._released:
            raise HailoRTInvalidOperationException("Device was released")
        if self._spec.unplugged:
            raise HailoRTDriverOperationFailedException(
                "PCIe driver failure. run 'dmesg | grep hailo' for more information"
            )
        return self._spec

    def release(self) -> None:
        self._released = True

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False


# ---------------------------------------------------------------- VDevice
class VDeviceParams:
    def __init__(self) -> None:
        self.device_ids: list[str] | None = None
        self.device_count = 1
        self.scheduling_algorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
        self.group_id = "SHARED"
        self.multi_process_service = False


class VDevice:
    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams()

    def __init__(self, params: VDeviceParams | None = None, *, device_ids: list[str] | None = None) -> None:
        params = params or VDeviceParams()
        wanted = device_ids or params.device_ids
        with _WORLD.lock:
            free = [s for s in _WORLD.devices if s.device_id not in _WORLD.held]
            if wanted:
                unknown = [d for d in wanted if d not in {s.device_id for s in _WORLD.devices}]
                if unknown:
                    raise _status(61, "HAILO_NOT_FOUND")
                chosen = [s for s in free if s.device_id in wanted]
                if len(chosen) != len(wanted):
                    raise _status(74, "HAILO_OUT_OF_PHYSICAL_DEVICES")
            else:
                if len(free) < params.device_count:
                    raise _status(74, "HAILO_OUT_OF_PHYSICAL_DEVICES")
                chosen = free[: params.device_count]
            for s in chosen:
                _WORLD.held[s.device_id] = self
        self._specs = chosen
        self.params = params
        self._released = False
        self._configured: list[ConfiguredInferModel] = []
        self._busy = threading.Lock()

    def _check(self) -> None:
        if self._released:
            raise HailoRTInvalidOperationException("VDevice was released")

    def get_physical_devices_ids(self) -> list[str]:
        self._check()
        return [s.device_id for s in self._specs]

    def get_physical_devices(self) -> list[Device]:
        self._check()
        return [Device(s.device_id) for s in self._specs]

    def create_infer_model(self, hef_source: str | bytes, name: str = "") -> InferModel:
        self._check()
        if not isinstance(hef_source, str):
            raise HailoRTInvalidArgumentException("the fake takes HEF paths (str) only")
        hef = _find_hef(hef_source)
        if hef is None:
            raise _status(13, "HAILO_OPEN_FILE_FAILURE")
        return InferModel(self, hef_source, hef)

    def release(self) -> None:
        if self._released:
            return
        open_models = [c for c in self._configured if not c._shut]
        if open_models:
            raise HailoRTInvalidOperationException(
                f"VDevice released while {len(open_models)} ConfiguredInferModel(s) are still open "
                "(exit their `with` / call shutdown() first)"
            )
        with _WORLD.lock:
            for s in self._specs:
                if _WORLD.held.get(s.device_id) is self:
                    del _WORLD.held[s.device_id]
        self._released = True

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False


# ---------------------------------------------------------------- InferModel
@dataclass(frozen=True)
class QuantInfo:
    qp_zp: float
    qp_scale: float
    limvals_min: float
    limvals_max: float


@dataclass
class _Format:
    type: FormatType
    order: FormatOrder


class HEF:
    def __init__(self, hef_source: str) -> None:
        if _find_hef(hef_source) is None:
            raise _status(13, "HAILO_OPEN_FILE_FAILURE")
        self.path = hef_source


class InferModel:
    class InferStream:
        def __init__(self, model: InferModel, spec: Any, is_input: bool) -> None:
            self._model = model
            self._spec = spec
            self.name: str = spec.name
            self.is_nms: bool = bool(getattr(spec, "nms_classes", 0))
            if self.is_nms:
                self.format = _Format(FormatType.FLOAT32, FormatOrder.HAILO_NMS_BY_CLASS)
                self.shape: tuple[int, ...] = (spec.nms_classes * (1 + BBOX_PARAMS * spec.nms_max_bboxes),)
            else:
                self.format = _Format(spec.native, FormatOrder.NHWC)
                self.shape = tuple(spec.shape)
            native = _DTYPES[FormatType.FLOAT32 if self.is_nms else spec.native]
            top = float(np.iinfo(native).max) if native.kind == "u" else 1.0
            lo, hi = (0 - spec.zero_point) * spec.scale, (top - spec.zero_point) * spec.scale
            self.quant_infos = [QuantInfo(float(spec.zero_point), float(spec.scale), float(lo), float(hi))]
            self._is_input = is_input

        def set_format_type(self, format_type: FormatType) -> None:
            self._model._check_not_configured("set_format_type")
            if format_type == FormatType.AUTO:
                format_type = self._spec.native
            if self.is_nms and format_type != FormatType.FLOAT32:
                raise HailoRTInvalidArgumentException("NMS_BY_CLASS outputs are FLOAT32")
            self.format.type = FormatType(format_type)

        def set_format_order(self, format_order: FormatOrder) -> None:
            self._model._check_not_configured("set_format_order")
            self.format.order = FormatOrder(format_order)

        def set_nms_score_threshold(self, threshold: float) -> None:
            raise HailoRTInvalidOperationException("NMS runs on the device for this model")

        @property
        def dtype(self) -> np.dtype[Any]:
            return _DTYPES[self.format.type]

    def __init__(self, vdevice: VDevice, path: str, hef: Any) -> None:
        self._vdevice = vdevice
        self._fake_hef = hef
        self.hef = HEF(path)
        self._configured = False
        self.batch_size = 1
        self._inputs = {hef.input_name: InferModel.InferStream(self, hef.input_spec(), True)}
        self._outputs = {o.name: InferModel.InferStream(self, o, False) for o in hef.outputs}

    def _check_not_configured(self, what: str) -> None:
        if self._configured:
            raise HailoRTInvalidOperationException(f"{what} after configure() has no effect")

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def inputs(self) -> list[InferModel.InferStream]:
        return list(self._inputs.values())

    @property
    def outputs(self) -> list[InferModel.InferStream]:
        return list(self._outputs.values())

    @staticmethod
    def _pick(streams: dict[str, InferModel.InferStream], name: str) -> InferModel.InferStream:
        if not name:
            if len(streams) != 1:
                raise HailoRTInvalidOperationException("there are several streams; pass a name")
            return next(iter(streams.values()))
        if name not in streams:
            raise HailoRTNotFoundException(f"no stream named {name!r}")
        return streams[name]

    def input(self, name: str = "") -> InferModel.InferStream:
        return self._pick(self._inputs, name)

    def output(self, name: str = "") -> InferModel.InferStream:
        return self._pick(self._outputs, name)

    def set_batch_size(self, batch_size: int) -> None:
        self._check_not_configured("set_batch_size")
        if batch_size != 1:
            raise NotImplementedError("the fake models batch size 1 only")
        self.batch_size = batch_size

    def configure(self) -> ConfiguredInferModel:
        self._vdevice._check()
        arch = self._fake_hef.architecture
        for spec in self._vdevice._specs:
            if spec.architecture not in _RUNS_ON.get(arch, {arch}):
                raise HailoRTHEFNotCompatibleWithDevice(
                    "HEF file is not compatible with device. See hailort.log for more information"
                )
        self._configured = True
        cim = ConfiguredInferModel(self)
        self._vdevice._configured.append(cim)
        return cim


# ---------------------------------------------------------------- bindings and running
class Bindings:
    class InferStream:
        def __init__(self, owner: Bindings, stream: InferModel.InferStream) -> None:
            self._owner = owner
            self._stream = stream
            self._buffer: np.ndarray | None = None

        def set_buffer(self, buffer: np.ndarray) -> None:
            if self._owner._in_flight:
                raise HailoRTInvalidOperationException("set_buffer on bindings whose job is still in flight")
            _check_buffer(self._stream, buffer)
            self._buffer = buffer

        def get_buffer(self, tf_format: bool = False) -> Any:
            if self._buffer is None:
                raise HailoRTInvalidOperationException(f"no buffer set for {self._stream.name!r}")
            if self._stream.is_nms and not self._stream._is_input:
                spec = self._stream._spec
                return _nms_by_class_from_flat(self._buffer, spec.nms_classes, spec.nms_max_bboxes, tf_format)
            return self._buffer

    def __init__(self, model: InferModel) -> None:
        self._model = model
        self._in_flight = False
        self._inputs = {n: Bindings.InferStream(self, s) for n, s in model._inputs.items()}
        self._outputs = {n: Bindings.InferStream(self, s) for n, s in model._outputs.items()}

    def input(self, name: str = "") -> Bindings.InferStream:
        return self._inputs[InferModel._pick(self._model._inputs, name).name]

    def output(self, name: str = "") -> Bindings.InferStream:
        return self._outputs[InferModel._pick(self._model._outputs, name).name]


def _check_buffer(stream: InferModel.InferStream, buffer: Any) -> None:
    if not isinstance(buffer, np.ndarray):
        raise HailoRTInvalidArgumentException(f"buffer for {stream.name!r} must be a numpy array")
    if not buffer.flags.c_contiguous:
        raise HailoRTException("Buffer must be C_CONTIGUOUS")
    if buffer.dtype != stream.dtype or tuple(buffer.shape) != tuple(stream.shape):
        raise HailoRTInvalidArgumentException(
            f"buffer for {stream.name!r} is {buffer.shape} {buffer.dtype}, "
            f"the stream needs {tuple(stream.shape)} {stream.dtype}"
        )


def _nms_by_class_from_flat(buf: np.ndarray, classes: int, max_bboxes: int, tf_format: bool) -> Any:
    out: list[np.ndarray] = []
    pos = 0
    for _ in range(classes):
        n = int(buf[pos])
        out.append(np.array(buf[pos + 1 : pos + 1 + BBOX_PARAMS * n], dtype=np.float32).reshape(n, BBOX_PARAMS))
        pos += 1 + BBOX_PARAMS * max_bboxes
    if tf_format:
        padded = np.zeros((classes, BBOX_PARAMS, max_bboxes), dtype=np.float32)
        for c, dets in enumerate(out):
            padded[c, :, : len(dets)] = dets.T
        return padded
    return out


@dataclass
class AsyncInferCompletionInfo:
    exception: BaseException | None


class AsyncInferJob:
    def __init__(self) -> None:
        self._done = threading.Event()
        self._exception: BaseException | None = None

    def wait(self, timeout_ms: int) -> None:
        if not self._done.wait(timeout_ms / 1000):
            raise HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")
        if self._exception is not None:
            raise self._exception


class ConfiguredInferModel:
    ASYNC_QUEUE_SIZE = 2

    def __init__(self, model: InferModel) -> None:
        self._model = model
        self._shut = False
        self._pending = 0
        self._cond = threading.Condition()
        self.runs = 0

    def _check(self) -> None:
        if self._shut:
            raise HailoRTInvalidOperationException("ConfiguredInferModel was shut down")
        self._model._vdevice._check()

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *args: object) -> bool:
        self.shutdown()
        return False

    def shutdown(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0, timeout=5)
        self._shut = True

    def create_bindings(
        self, input_buffers: dict[str, np.ndarray] | None = None, output_buffers: dict[str, np.ndarray] | None = None
    ) -> Bindings:
        self._check()
        bindings = Bindings(self._model)
        for given, streams in ((input_buffers, bindings._inputs), (output_buffers, bindings._outputs)):
            for name, buf in (given or {}).items():
                if name not in streams:
                    raise HailoRTNotFoundException(f"no stream named {name!r}")
                streams[name].set_buffer(buf)
        return bindings

    def get_async_queue_size(self) -> int:
        return self.ASYNC_QUEUE_SIZE

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        self._check()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._pending + frames_count <= self.ASYNC_QUEUE_SIZE, timeout=timeout_ms / 1000
            )
        if not ok:
            raise HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")

    def _validate(self, bindings_list: list[Bindings]) -> None:
        if not isinstance(bindings_list, list) or len(bindings_list) != self._model.batch_size:
            raise HailoRTInvalidArgumentException("pass a list with one Bindings per frame of the batch")
        for b in bindings_list:
            if b._model is not self._model:
                raise HailoRTInvalidArgumentException("bindings belong to another model")
            for s in (*b._inputs.values(), *b._outputs.values()):
                if s._buffer is None:
                    raise HailoRTInvalidOperationException(f"no buffer set for {s._stream.name!r}")

    def _infer_one(self, b: Bindings) -> None:
        hef = self._model._fake_hef
        if hef.fail_with is not None:
            raise hef.fail_with
        frame = next(iter(b._inputs.values()))._buffer
        assert frame is not None
        results = hef.infer(frame.copy())
        for name, stream in b._outputs.items():
            _write_output(stream._stream, stream._buffer, results[name])
        self.runs += 1

    def run(self, bindings: list[Bindings], timeout: int) -> None:
        self._check()
        self._validate(bindings)
        latency = self._model._fake_hef.latency_s
        if latency * 1000 > timeout:
            time.sleep(timeout / 1000)
            raise HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")
        with self._model._vdevice._busy:
            time.sleep(latency)
            for b in bindings:
                self._infer_one(b)

    def run_async(self, bindings: list[Bindings], callback: Any = None) -> AsyncInferJob:
        self._check()
        self._validate(bindings)
        with self._cond:
            if self._pending >= self.ASYNC_QUEUE_SIZE:
                raise HailoRTException("libhailort failed with error: 87 (HAILO_QUEUE_IS_FULL)")
            self._pending += 1
        for b in bindings:
            b._in_flight = True
        job = AsyncInferJob()

        def work() -> None:
            exc: BaseException | None = None
            try:
                with self._model._vdevice._busy:  # the chip runs one frame at a time
                    time.sleep(self._model._fake_hef.latency_s)
                    for b in bindings:
                        self._infer_one(b)
            except HailoRTException as e:
                exc = e
            except Exception as e:  # a broken fake HEF function: surface it, do not hang the caller
                exc = HailoRTException(f"fake HEF function failed: {e!r}")
                _WORLD.callback_errors.append(e)
            finally:
                for b in bindings:
                    b._in_flight = False
            job._exception = exc
            if callback is not None:
                try:
                    callback(completion_info=AsyncInferCompletionInfo(exception=exc))
                except BaseException as cb_exc:  # the real runtime would log it in hailort.log
                    _WORLD.callback_errors.append(cb_exc)
            job._done.set()
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

        threading.Thread(target=work, name="fake-hailort-job", daemon=True).start()
        return job


def _write_output(stream: InferModel.InferStream, buf: np.ndarray | None, value: Any) -> None:
    """What the device and HailoRT's output transform put into a user buffer."""
    assert buf is not None
    spec = stream._spec
    if stream.is_nms:
        buf[:] = 0
        pos = 0
        if len(value) != spec.nms_classes:
            raise AssertionError(f"fake HEF returned {len(value)} classes for {spec.name}, not {spec.nms_classes}")
        for dets in value:
            dets = np.asarray(dets, dtype=np.float32).reshape(-1, BBOX_PARAMS)[: spec.nms_max_bboxes]
            buf[pos] = len(dets)
            buf[pos + 1 : pos + 1 + dets.size] = dets.reshape(-1)
            pos += 1 + BBOX_PARAMS * spec.nms_max_bboxes
        return
    value = np.asarray(value, dtype=np.float32)
    if value.shape != tuple(spec.shape):
        raise AssertionError(f"fake HEF returned {value.shape} for {spec.name}, not {tuple(spec.shape)}")
    native = _DTYPES[spec.native]
    if native == np.float32:
        q = value
    else:  # the device computes in integers: quantise with this output's quant info
        info = np.iinfo(native)
        q = np.clip(np.rint(value / spec.scale + spec.zero_point), info.min, info.max).astype(native)
    if stream.format.type == FormatType.FLOAT32 and native != np.float32:
        buf[...] = (q.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
    else:
        buf[...] = q
