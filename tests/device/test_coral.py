"""CoralDetector: the real LiteRT interpreter on a real quantised SSD model (built here, no TensorFlow) on the CPU,
and the Edge TPU delegate path against a fake ``load_delegate``.

The model: a uint8 or int8 [1, 8, 8, 3] input, DEQUANTIZE, RESHAPE, and the real ``TFLite_Detection_PostProcess``
op with 64 anchors (one per pixel). The green channel of a pixel is the score of class 0 (person) in that grid
cell, the blue channel the score of class 1. Outputs come in the TF1 order boxes, classes, scores, count.

Fake Edge TPU delegate (decision): ``ai_edge_litert.interpreter.load_delegate`` is replaced by a function that
raises ``ValueError`` like libedgetpu does with no TPU, or returns a ``FakeDelegate``; ``Interpreter`` is wrapped
so that it checks it was handed exactly that delegate for "libedgetpu.so.1" and then runs the model on the CPU
(a model that is not Edge-TPU compiled has no ``edgetpu-custom-op``, so the CPU result is what the TPU would give).
"""

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as s
from flatbuffers import flexbuffers

GRID = 8  # the input is GRID x GRID x 3; one anchor per pixel


def _postprocess_options(max_detections: int) -> list[int]:
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Int("max_detections", max_detections)
        fbb.Int("max_classes_per_detection", 1)
        fbb.Int("detections_per_class", 100)
        fbb.Bool("use_regular_nms", False)
        fbb.Float("nms_score_threshold", 0.3)
        fbb.Float("nms_iou_threshold", 0.5)
        fbb.Int("num_classes", 2)
        fbb.Float("y_scale", 10.0)
        fbb.Float("x_scale", 10.0)
        fbb.Float("h_scale", 5.0)
        fbb.Float("w_scale", 5.0)
    return list(fbb.Finish())


def build_ssd_model(input_type: str = "uint8", max_detections: int = 10) -> bytes:
    """Input [1,8,8,3] uint8 (scale 1/255, zp 0) or int8 (scale 1/255, zp -128). Each pixel is an anchor box of
    one grid cell; channel 1 (G) is the score of class 0 ("person"), channel 2 (B) of class 1; channel 0 is the
    background logit. Outputs: boxes, classes, scores, count (the TF1 order)."""
    n = GRID * GRID
    scale = 1.0 / 255.0
    zp = 0 if input_type == "uint8" else -128
    qtype = s.TensorType.UINT8 if input_type == "uint8" else s.TensorType.INT8
    ys, xs = np.meshgrid((np.arange(GRID) + 0.5) / GRID, (np.arange(GRID) + 0.5) / GRID, indexing="ij")
    anchors = np.stack([ys.ravel(), xs.ravel(), np.full(n, 1 / GRID), np.full(n, 1 / GRID)], 1).astype(np.float32)
    encodings = np.zeros((1, n, 4), np.float32)

    def buf(data: bytes | None = None) -> s.BufferT:
        b = s.BufferT()
        b.data = list(data) if data else None
        return b

    buffers = [buf(), buf(), buf(), buf(encodings.tobytes()), buf(anchors.tobytes()), buf(), buf(), buf(), buf()]
    buffers.append(buf(np.array([1, n, 3], np.int32).tobytes()))

    def tensor(name: str, shape: list[int], ttype: int, buffer: int, quant: tuple[float, int] | None = None):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, ttype, buffer
        if quant is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [quant[0]], [quant[1]]
            t.quantization = q
        return t

    F = s.TensorType.FLOAT32
    tensors = [
        tensor("image", [1, GRID, GRID, 3], qtype, 1, (scale, zp)),  # 0
        tensor("image_float", [1, GRID, GRID, 3], F, 2),  # 1
        tensor("class_predictions", [1, n, 3], F, 0),  # 2
        tensor("box_encodings", [1, n, 4], F, 3),  # 3
        tensor("anchors", [n, 4], F, 4),  # 4
        tensor("TFLite_Detection_PostProcess", [1, max_detections, 4], F, 5),  # 5 boxes
        tensor("TFLite_Detection_PostProcess:1", [1, max_detections], F, 6),  # 6 classes
        tensor("TFLite_Detection_PostProcess:2", [1, max_detections], F, 7),  # 7 scores
        tensor("TFLite_Detection_PostProcess:3", [1], F, 8),  # 8 count
        tensor("new_shape", [3], s.TensorType.INT32, 9),  # 9
    ]
    codes = []
    for builtin, custom in (
        (s.BuiltinOperator.DEQUANTIZE, None),
        (s.BuiltinOperator.RESHAPE, None),
        (s.BuiltinOperator.CUSTOM, "TFLite_Detection_PostProcess"),
    ):
        c = s.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.customCode, c.version = builtin, builtin, custom, 1
        codes.append(c)
    ops = []
    for index, inputs, outputs in ((0, [0], [1]), (1, [1, 9], [2]), (2, [3, 2, 4], [5, 6, 7, 8])):
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, inputs, outputs
        ops.append(op)
    ops[1].builtinOptionsType = s.BuiltinOptions.ReshapeOptions
    ops[1].builtinOptions = s.ReshapeOptionsT()
    ops[1].builtinOptions.newShape = [1, n, 3]
    ops[2].customOptions = _postprocess_options(max_detections)
    ops[2].customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators, graph.name = tensors, [0], [5, 6, 7, 8], ops, "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [graph], buffers
    model.description = "WardSight test SSD"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# -- the fake Edge TPU -------------------------------------------------------------------------------------

from typing import ClassVar  # noqa: E402

import pytest  # noqa: E402

from accelerators import registry  # noqa: E402

registry.entries()  # load the registry's plugins first: entries() loads them only into an empty registry

from accelerators import coral  # noqa: E402
from accelerators.coral import INSTALL_HINT, CoralDetector, CoralError  # noqa: E402


class FakeDelegate:
    def __init__(self, library, options):
        self.library, self.options = library, options


@pytest.fixture
def model_file(tmp_path):
    def make(input_type="uint8", max_detections=10):
        path = tmp_path / f"ssd_{input_type}_{max_detections}.tflite"
        path.write_bytes(build_ssd_model(input_type, max_detections))
        return path

    return make


@pytest.fixture
def edgetpu(monkeypatch):
    """State of the fake TPU: present or not; every delegate loaded and interpreter made are recorded."""
    from ai_edge_litert import interpreter as litert

    real_interpreter = litert.Interpreter

    class State:
        present = True
        delegates: ClassVar[list] = []
        interpreters: ClassVar[list] = []

    monkeypatch.setattr(coral, "library_installed", lambda: State.present)

    def load_delegate(library, options=None):
        if not State.present:
            raise ValueError(f"Failed to load delegate from {library}\n")
        d = FakeDelegate(library, options)
        State.delegates.append(d)
        return d

    def interpreter(model_path=None, model_content=None, experimental_delegates=None, num_threads=None):
        for d in experimental_delegates or []:
            assert isinstance(d, FakeDelegate) and d in State.delegates and d.library == "libedgetpu.so.1"
        State.interpreters.append(experimental_delegates)
        return real_interpreter(model_path=model_path, model_content=model_content, num_threads=num_threads)

    monkeypatch.setattr(litert, "load_delegate", load_delegate)
    monkeypatch.setattr(litert, "Interpreter", interpreter)
    monkeypatch.setattr(coral, "list_edge_tpus", lambda: [{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}])
    return State


def frame_with(cells, size=(320, 240)):
    """An RGB frame whose 8x8 grid cell (row, col) is filled with the given (r, g, b)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    for (row, col), rgb in cells.items():
        img[row * h // 8 : (row + 1) * h // 8, col * w // 8 : (col + 1) * w // 8] = rgb
    return img


# -- the real interpreter on the CPU --------------------------------------------------------------------


@pytest.mark.parametrize("input_type", ["uint8", "int8"])
def test_people_from_a_real_quantised_ssd_on_the_cpu(model_file, input_type):
    det = CoralDetector(model_file(input_type), use_tpu=False, min_score=0.4)
    assert det.input_size == (8, 8) and det.max_detections == 10
    frame = frame_with({(2, 3): (0, 230, 0), (5, 6): (0, 0, 250), (6, 1): (0, 80, 0)})
    people = det.detect(frame)
    assert len(people) == 1  # the blue cell is class 1, the dim green one is below min_score
    p = people[0]
    assert p.box == pytest.approx((3 * 40, 2 * 30, 4 * 40, 3 * 30), abs=1e-3)  # (ymin, xmin, ...) -> (x1, y1, ...)
    assert p.score == pytest.approx(230 / 255, abs=0.01)
    assert p.keypoints.shape == (17, 3) and p.keypoints.dtype == np.float32 and not p.keypoints[:, 2].any()
    assert set(det.last_timings) == {"preprocess", "invoke", "decode"}


def test_int8_input_is_pixel_minus_128(model_file):
    u8 = CoralDetector(model_file("uint8"), use_tpu=False)
    i8 = CoralDetector(model_file("int8"), use_tpu=False)
    rgb = np.array([[[0, 128, 255]]], np.uint8)
    assert u8.quantise_input(rgb) is rgb
    q = i8.quantise_input(rgb)
    assert q.dtype == np.int8 and q.tolist() == [[[-128, 0, 127]]]
    frame = frame_with({(1, 1): (0, 200, 0), (4, 4): (0, 120, 0)})
    a, b = u8.detect(frame), i8.detect(frame)
    assert [p.box for p in a] == [p.box for p in b] and len(a) == 2


def test_only_count_rows_are_read_and_empty_frames_give_nobody(model_file):
    det = CoralDetector(model_file(), use_tpu=False, min_score=0.0)
    assert det.detect(np.zeros((100, 100, 3), np.uint8)) == []  # count 0: the junk rows are not read
    det.min_score = 0.4
    many = frame_with({(r, c): (0, 255, 0) for r in (0, 2, 4, 6) for c in (0, 2, 4, 6)})
    assert len(det.detect(many)) == 10  # max_detections of the post-process


def test_decode_rules_on_constructed_tensors(model_file):
    det = CoralDetector(model_file(), use_tpu=False, min_score=0.5)
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.2, 0.5], [0.3, 0.3, 0.2, 0.4], [0, 0, 1, 1]], np.float32)
    classes = np.array([0, 0, 0, 2], np.float32)
    scores = np.array([0.9, 0.7, 0.95, 0.99], np.float32)
    people = det.decode(boxes, classes, scores, 4, (200, 100))
    assert [p.box for p in people] == [pytest.approx((40, 10, 120, 50)), pytest.approx((0, 0, 100, 100))]
    assert det.decode(boxes, classes, scores, 1, (200, 100))[0].score == pytest.approx(0.9)


def test_bad_frames_are_rejected(model_file):
    det = CoralDetector(model_file(), use_tpu=False)
    with pytest.raises(ValueError, match="RGB uint8"):
        det.detect(np.zeros((10, 10, 3), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RGB uint8"):
        det.detect(np.zeros((10, 10), np.uint8))


def test_float_models_and_non_ssd_models_are_refused(tmp_path, shared):
    with pytest.raises(CoralError, match="not a quantised"):
        CoralDetector(shared / "models" / "aizoo_face_mask_detection.tflite", use_tpu=False)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(CoralError, match="cannot load model"):
        CoralDetector(bad, use_tpu=False)
    with pytest.raises(CoralError, match="does not exist"):
        CoralDetector(tmp_path / "missing.tflite", use_tpu=False)


# -- the Edge TPU delegate -------------------------------------------------------------------------------


def test_the_delegate_is_libedgetpu_with_the_device_option(model_file, edgetpu):
    det = CoralDetector(model_file(), device="usb:0")
    assert [(d.library, d.options) for d in edgetpu.delegates] == [("libedgetpu.so.1", {"device": "usb:0"})]
    assert edgetpu.interpreters[-1] == edgetpu.delegates
    assert len(det.detect(frame_with({(3, 3): (0, 255, 0)}))) == 1


def test_no_tpu_is_a_clear_error(model_file, edgetpu):
    edgetpu.present = False
    coral.list_edge_tpus = lambda: []  # type: ignore[assignment]  (undone by monkeypatch)
    with pytest.raises(CoralError, match="libedgetpu1-std"):
        CoralDetector(model_file())


def test_probe(edgetpu, monkeypatch):
    assert coral.probe().available and coral.probe().reason == "Edge TPU at /sys/bus/usb/devices/2-1"
    edgetpu.present = False
    monkeypatch.setattr(coral, "list_edge_tpus", lambda: [])
    monkeypatch.setattr(coral.os.path, "exists", lambda p: False)
    state = coral.probe()
    assert (
        not state.available
        and state.reason == INSTALL_HINT == "libedgetpu is not installed (apt install libedgetpu1-std)"
    )


def test_probe_on_this_machine_has_no_tpu():
    state = coral.probe()  # the real ai_edge_litert: libedgetpu is not here
    assert not state.available and "libedgetpu1-std" in state.reason


def test_registered():
    assert registry._REGISTRY["coral"].probe is coral.probe
