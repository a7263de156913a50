"""``reflame landmarks SCAN --out FILE``: detect landmarks on a scan and write their JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reflame_core.errors import ReflameError
from reflame_core.fit.config_rules import AXES
from reflame_core.landmarks.detector import DETECTOR_NAMES, get_detector


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``landmarks`` subcommand; its handler is ``args.handler(args) -> int``."""
    p = subparsers.add_parser(
        "landmarks", help="detect 3D face landmarks on a scan",
        description="Detect the 68 iBUG face landmarks on SCAN and write them as an editable "
        "landmark JSON. An existing --out file is never overwritten: it is renamed to "
        "NAME.YYYYmmdd-HHMMSS.bak.json first. No face found, or a bad input, exits 2.")
    p.add_argument("scan", type=Path, help="scan file (OBJ+MTL+texture, PLY, GLB/GLTF)")
    p.add_argument("--out", type=Path, required=True, help="landmark JSON to write")
    p.add_argument("--flame-dir", type=Path, default=None,
                   help="FLAME folder (for --refine; default $REFLAME_FLAME_DIR, then the "
                   "user config)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="place the 68 where a quick FLAME fit of the scan puts them (the fast "
                   "preset's geometry stages, tens of seconds on a CPU): the jaw line holds far "
                   "better than a detector's. Default: on when a FLAME folder is set up, else "
                   "detection only; --refine insists on FLAME, --no-refine writes the "
                   "detections as they are")
    p.add_argument("--detector", choices=DETECTOR_NAMES, default="auto")
    p.add_argument("--up", default=None, help=f"scan axis pointing up ({' '.join(AXES)}); "
                   "default: found from the face (with --front: +y)")
    p.add_argument("--front", default=None, help="scan axis the face looks along; default: "
                   "found from the face (with --up: +z)")
    p.add_argument("--mediapipe-model", type=Path, default=None, help="face_landmarker .task")
    p.add_argument("--dwpose-dir", type=Path, default=None, help="folder with DWPose ONNX files")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=run)
    return p


def _flame_for_refining(args: argparse.Namespace, log):
    """The FLAME assets to refine with, or None (``--no-refine``, or by default where no FLAME
    folder is set up: logged). ``--refine`` or a ``--flame-dir`` that cannot be read fail."""
    if args.refine is False:
        return None
    from reflame_core.errors import AssetError
    from reflame_core.fit.setup import load_flame

    try:
        return load_flame(args.flame_dir)
    except AssetError as exc:
        if args.refine or args.flame_dir is not None:
            raise
        first = str(exc).splitlines()[0]
        log(f"landmarks: detection only, not refined by a FLAME fit ({first})")
        return None


def run(args: argparse.Namespace) -> int:
    from reflame_core.io.output_folder import check_output_file, prepare_output_dir
    from reflame_core.io.scan import load_scan
    from reflame_core.landmarks.detect import detect_landmarks
    from reflame_core.landmarks.landmark_json import save_landmarks
    from reflame_core.landmarks.orient import find_frame, no_face_in_frame
    from reflame_core.landmarks.plausibility import (
        detection_doubtful,
        detection_failed,
        landmark_problems,
        orientation_warning,
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    auto = args.up is None and args.front is None
    up, front = args.up or "+y", args.front or "+z"
    for option, value in (("--up", up), ("--front", front)):
        if value not in AXES:
            raise ReflameError(f"{option} {value!r}: must be one of {' '.join(AXES)}")
    if up[1] == front[1]:
        raise ReflameError(f"--up {up} and --front {front} must be different axes")
    check_output_file(args.out)
    flame = _flame_for_refining(args, log)  # said before minutes of detection, not after
    scan = load_scan(args.scan)
    for note in scan.notes:
        log(f"{args.scan.name}: {note}")
    detector = get_detector(args.detector, mediapipe_model=args.mediapipe_model,
                            dwpose_dir=args.dwpose_dir)
    sim = None
    if auto:
        found = find_frame(scan, detector, device=args.device)
        if found.candidates > 0:
            sim = found.to_canonical
            log(f"frame: found {found.describe()} (override with --up/--front)")
        else:
            log(f"frame: {found.describe()}")
    lms = detect_landmarks(scan, backend=detector, device=args.device, up=up, front=front,
                           to_canonical=sim)
    problems = landmark_problems(lms, scan.vertices, scan.faces)
    failed = detection_failed(lms)
    if sim is not None and (problems or failed or not lms.placed_mask[:68].any()):
        # No face (or no possible one) in the frame read off the face: the scan's own axes
        # instead, as `reflame fit` does (fit.setup.detected_inputs).
        log(no_face_in_frame(up, front))
        sim = None
        lms = detect_landmarks(scan, backend=detector, device=args.device, up=up, front=front)
        problems = landmark_problems(lms, scan.vertices, scan.faces)
        failed = detection_failed(lms)
    placed = int(lms.placed_mask[:68].sum())
    if placed == 0:
        raise ReflameError(f"{args.scan}: no face found on the renders of the scan (check "
                           f"--up/--front); nothing written")
    doubt = None if failed else detection_doubtful(lms)
    for problem in problems + [w for w in (failed, doubt) if w]:
        log(f"landmarks: WARNING: {problem}")
    if flame is not None:
        from reflame_core.fit.landmark_refine import landmarks_from_fit
        from reflame_core.geometry.frame import canonical_frame

        frame = sim or canonical_frame(scan.vertices, up=up, front=front)
        log("landmarks: placing the 68 by a FLAME fit (--no-refine: the detections as they are)")
        lms = landmarks_from_fit(scan, lms, flame, to_canonical=frame, device=args.device)
    warning = None if sim is not None else orientation_warning(lms, scan.vertices, scan.faces,
                                                                  up)
    if warning:
        log(f"landmarks: WARNING: {warning}")
    prepare_output_dir(args.out.parent, [args.out.name], log)
    save_landmarks(args.out, lms, scan.vertices, scan.faces)
    how = f"{detector.name}, refined by a FLAME fit" if flame is not None else detector.name
    print(f"{args.out}: {placed} of 68 iBUG landmarks placed ({how})")
    return 0
