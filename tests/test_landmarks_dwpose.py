"""The DWPose code path (detector + pose ONNX models on onnxruntime) with tiny generated models.

The generated models have the real models' input/output names and shapes. The pose model
answers with the crop's brightest column/row as every keypoint's SimCC peak, so a bright
dot in the image must come back at its own pixel: that checks the letterbox, box decoding,
crop affine, SimCC decoding and the mapping back to image pixels end to end.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from reflame_core.landmarks.detector import DetectorUnavailable, get_detector
from reflame_core.landmarks.dwpose_detector import DET_FILE, POSE_FILE, DWPoseDetector

BOX_640 = (260.0, 240.0, 420.0, 440.0)  # person box in the detector's 640x640 input


def _save(nodes, inputs, outputs, inits, path) -> None:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _detector(path, with_person: bool) -> None:
    """(1,3,640,640) 'images' -> (1,8400,85) 'output': one confident person anchor or none."""
    raw = np.zeros((1, 8400, 85), np.float32)
    if with_person:
        cx, cy = (BOX_640[0] + BOX_640[2]) / 2, (BOX_640[1] + BOX_640[3]) / 2
        w, h = BOX_640[2] - BOX_640[0], BOX_640[3] - BOX_640[1]
        gx, gy = int(cx // 32), int(cy // 32)
        anchor = 80 * 80 + 40 * 40 + gy * 20 + gx  # stride-32 grid comes last
        raw[0, anchor, :6] = [cx / 32 - gx, cy / 32 - gy, np.log(w / 32), np.log(h / 32), 1, 1]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["raw", "z"], ["output"]),
    ]
    inits = [numpy_helper.from_array(raw, "raw"), numpy_helper.from_array(np.float32(0), "zero")]
    _save(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8400, 85])], inits, path)


def _pose(path) -> None:
    """(N,3,384,288) 'input' -> 'simcc_x' (N,133,576), 'simcc_y' (N,133,768) brightness profiles."""
    def profile(axes, shape_name, out):
        return [
            helper.make_node("ReduceMean", ["input", axes], [out + "_a"], keepdims=1),
            # Normalised black is about -2: lift the profile so its peak scores above 0.3.
            helper.make_node("Add", [out + "_a", "offset"], [out + "_m"]),
            helper.make_node("Resize", [out + "_m", "", "scales"], [out + "_r"], mode="nearest"),
            helper.make_node("Reshape", [out + "_r", shape_name], [out + "_f"]),
            helper.make_node("Expand", [out + "_f", out + "_e"], [out]),
        ]
    nodes = profile("ax_x", "shape_x", "simcc_x") + profile("ax_y", "shape_y", "simcc_y")
    nodes[2].input[2] = "scales_x"
    nodes[7].input[2] = "scales_y"
    arr = [
        (np.array([1, 2], np.int64), "ax_x"), (np.array([1, 3], np.int64), "ax_y"),
        (np.array([1, 1, 1, 2], np.float32), "scales_x"),
        (np.array([1, 1, 2, 1], np.float32), "scales_y"),
        (np.array([-1, 1, 576], np.int64), "shape_x"),
        (np.array([-1, 1, 768], np.int64), "shape_y"),
        (np.array([1, 133, 576], np.int64), "simcc_x_e"),
        (np.array([1, 133, 768], np.int64), "simcc_y_e"), (np.float32(2.5), "offset"),
    ]
    _save(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 384, 288])],
          [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, ["N", 133, 576]),
           helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, ["N", 133, 768])],
          [numpy_helper.from_array(a, n) for a, n in arr], path)


def _image(x: int, y: int, size: int = 320) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[y - 1 : y + 2, x - 1 : x + 2] = 255
    return img


@pytest.mark.parametrize("with_person", [True, False])
def test_dwpose_pipeline_finds_the_dot(tmp_path, with_person):
    _detector(tmp_path / DET_FILE, with_person)
    _pose(tmp_path / POSE_FILE)
    det = DWPoseDetector(weights_dir=tmp_path, download=False)
    # Detector input is the 320 image scaled x2, so the box is (130,120)-(210,220) here.
    spots = [(170, 170), (150, 200)]
    out = det.detect(np.stack([_image(*s) for s in spots]))
    for (x, y), d in zip(spots, out, strict=True):
        assert d is not None and d.names[:2] == ("contour_00", "contour_01")
        assert d.names[-4:] == ("eye_right_centre", "eye_left_centre", "ear_right", "ear_left")
        assert d.points.shape == (72, 2)
        # Crop pixels are 1/2 SimCC bins; the crop scale is at most ~1.5 image px per crop px.
        np.testing.assert_allclose(d.points, np.tile([x + 0.5, y + 0.5], (72, 1)), atol=2.0)


def test_dwpose_without_weights_is_clear_and_auto_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("REFLAME_DWPOSE_DIR", str(tmp_path / "nothing"))
    with pytest.raises(DetectorUnavailable, match="yolox_l.onnx.*huggingface.co/yzd-v/DWPose"):
        DWPoseDetector(download=False)
    # Offline download: a clear message, not a traceback from urllib.
    monkeypatch.setattr("reflame_core.landmarks.dwpose_detector.WEIGHTS_URL",
                        "http://127.0.0.1:9/{name}")
    with pytest.raises(DetectorUnavailable, match="downloading them failed"):
        DWPoseDetector(download=True)
    monkeypatch.setenv("REFLAME_MEDIAPIPE_MODEL", str(tmp_path / "none.task"))
    with pytest.warns(UserWarning, match="mediapipe unavailable"), \
            pytest.raises(DetectorUnavailable, match="no landmark detector can run"):
        get_detector("auto", download=False)
