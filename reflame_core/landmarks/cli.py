"""``reflame landmarks SCAN --out FILE``: detect landmarks on a scan and write their JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from reflame_core.landmarks.detector import DETECTOR_NAMES, get_detector


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``landmarks`` subcommand; its handler is ``args.handler(args) -> int``."""
    p = subparsers.add_parser("landmarks", help="detect 3D face landmarks on a scan")
    p.add_argument("scan", type=Path, help="scan file (OBJ+MTL+texture, PLY, GLB/GLTF)")
    p.add_argument("--out", type=Path, required=True, help="landmark JSON to write")
    p.add_argument("--flame-dir", type=Path, default=None,
                   help="FLAME folder (not needed for detection; accepted for symmetry)")
    p.add_argument("--detector", choices=DETECTOR_NAMES, default="auto")
    p.add_argument("--up", default="+y", help="scan axis pointing up (+x,-x,+y,-y,+z,-z)")
    p.add_argument("--front", default="+z", help="scan axis the face looks along")
    p.add_argument("--mediapipe-model", type=Path, default=None, help="face_landmarker .task")
    p.add_argument("--dwpose-dir", type=Path, default=None, help="folder with DWPose ONNX files")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from reflame_core.io.scan import load_scan
    from reflame_core.landmarks.detect import detect_landmarks
    from reflame_core.landmarks.landmark_json import save_landmarks

    scan = load_scan(args.scan)
    detector = get_detector(args.detector, mediapipe_model=args.mediapipe_model,
                            dwpose_dir=args.dwpose_dir)
    lms = detect_landmarks(scan, backend=detector, device=args.device, up=args.up,
                           front=args.front)
    save_landmarks(args.out, lms, scan.vertices, scan.faces)
    placed = int(lms.placed_mask[:68].sum())
    print(f"{args.out}: {placed} of 68 iBUG landmarks placed ({detector.name})")
    return 0
