"""The DWPose two-stage ONNX pipeline on onnxruntime: YOLOX person boxes, then RTMPose
whole-body keypoints decoded from SimCC vectors.

Re-implemented here (same model files, tensors and pre/post-processing as the ``dwpose`` PyPI
package) because that package imports torch benchmarking, matplotlib and huggingface_hub at
import time without declaring them, and prints timings on every call.

Models (DWPose release ``yzd-v/DWPose``):
- detector ``yolox_l.onnx``: input (1,3,640,640) float32 BGR-order-free raw 0..255 letterboxed
  image (pad 114), output (1,8400,85): per anchor cx, cy, log w, log h (grid units), objectness,
  80 COCO class scores; anchors on strides 8, 16, 32.
- pose ``dw-ll_ucoco_384.onnx``: input (N,3,384,288) float32 normalised crops, outputs
  ``simcc_x`` (N,133,576) and ``simcc_y`` (N,133,768) (2 bins per pixel).
The 133 COCO-WholeBody keypoints: 0-16 body (1/2 left/right eye, 3/4 left/right ear),
17-22 feet, 23-90 the 68 face points in iBUG order, 91-132 hands.
"""

from __future__ import annotations

import cv2
import numpy as np

DET_SIZE = (640, 640)  # (H, W)
POSE_SIZE = (288, 384)  # (W, H)
SIMCC_SPLIT = 2.0
BOX_PADDING = 1.25
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
FACE_SLICE = slice(23, 91)
EXTRA_KEYPOINTS = {"eye_right_centre": 2, "eye_left_centre": 1, "ear_right": 4, "ear_left": 3}


def letterbox(image: np.ndarray, size: tuple[int, int] = DET_SIZE) -> tuple[np.ndarray, float]:
    """(H,W,3) uint8 -> (1,3,h,w) float32 image scaled into the top-left corner, and the scale."""
    r = min(size[0] / image.shape[0], size[1] / image.shape[1])
    nh, nw = int(image.shape[0] * r), int(image.shape[1] * r)
    canvas = np.full((size[0], size[1], 3), 114, np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1)[None].astype(np.float32), r


def _anchor_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(A,2) grid cell (x,y) and (A,1) stride of every YOLOX anchor, strides 8/16/32."""
    cells, strides = [], []
    for s in (8, 16, 32):
        ys, xs = np.mgrid[0 : size[0] // s, 0 : size[1] // s]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full((xs.size, 1), s))
    return np.concatenate(cells), np.concatenate(strides)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[int]:
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        iou = inter / (area[i] + area[rest] - inter + 1e-9)
        order = rest[iou <= iou_thr]
    return keep


def decode_person_boxes(raw: np.ndarray, scale: float, score_thr: float = 0.3,
                        iou_thr: float = 0.45) -> np.ndarray:
    """YOLOX output (1,A,85) -> (M,4) person boxes x0,y0,x1,y1 in original pixels, best first."""
    pred = raw[0].astype(np.float64)
    cells, strides = _anchor_grid(DET_SIZE)
    centre = (pred[:, :2] + cells) * strides
    wh = np.exp(np.clip(pred[:, 2:4], -20, 20)) * strides
    score = pred[:, 4] * pred[:, 5]  # objectness x "person" class score
    keep = score > score_thr
    if not keep.any():
        return np.zeros((0, 4))
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1)[keep] / scale
    kept = _nms(boxes, score[keep], iou_thr)
    return boxes[kept]


def crop_transform(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box (4,) -> 2x3 affine image->crop and 2x3 crop->image for the pose input size.

    The padded box is grown to the crop's aspect ratio, centred, no rotation.
    """
    centre = (box[:2] + box[2:]) / 2
    w, h = (box[2:] - box[:2]) * BOX_PADDING
    aspect = POSE_SIZE[0] / POSE_SIZE[1]
    w, h = (w, w / aspect) if w > h * aspect else (h * aspect, h)
    s = POSE_SIZE[0] / w  # pixels of crop per image pixel (same along y by construction)
    fwd = np.array([[s, 0, POSE_SIZE[0] / 2 - s * centre[0]],
                    [0, s, POSE_SIZE[1] / 2 - s * centre[1]]])
    inv = np.array([[1 / s, 0, centre[0] - POSE_SIZE[0] / (2 * s)],
                    [0, 1 / s, centre[1] - POSE_SIZE[1] / (2 * s)]])
    return fwd, inv


def pose_input(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Crops for every box -> (N,3,384,288) float32 normalised, and the crop->image affines."""
    crops, invs = [], []
    for box in boxes:
        fwd, inv = crop_transform(box)
        crop = cv2.warpAffine(image, fwd, POSE_SIZE, flags=cv2.INTER_LINEAR)
        crops.append(((crop - MEAN) / STD).transpose(2, 0, 1))
        invs.append(inv)
    return np.stack(crops).astype(np.float32), invs


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray,
                 inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One person's SimCC (K,Wx), (K,Wy) -> (K,2) image pixels and (K,) scores.

    Score = the smaller of the two peak values (as RTMPose does).
    """
    xs = np.argmax(simcc_x, 1) / SIMCC_SPLIT
    ys = np.argmax(simcc_y, 1) / SIMCC_SPLIT
    score = np.minimum(simcc_x.max(1), simcc_y.max(1))
    crop_pts = np.stack([xs, ys, np.ones_like(xs)], 1)
    return crop_pts @ inv.T, score


def run_wholebody(det_session, pose_session, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image (H,W,3) uint8 RGB -> the most confident person's (133,2) pixels and (133,) scores.

    When the detector finds no person (a head-only render may not look like one), the
    whole image is the box.
    """
    det_in, scale = letterbox(image)
    raw = det_session.run(None, {det_session.get_inputs()[0].name: det_in})[0]
    boxes = decode_person_boxes(raw, scale)
    if len(boxes) == 0:
        boxes = np.array([[0.0, 0.0, image.shape[1], image.shape[0]]])
    crops, invs = pose_input(image, boxes[:1])
    simcc_x, simcc_y = pose_session.run(None, {pose_session.get_inputs()[0].name: crops})[:2]
    return decode_simcc(simcc_x[0], simcc_y[0], invs[0])
