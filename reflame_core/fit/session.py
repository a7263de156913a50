"""``FitSession``: the fitting state machine. One ``step()`` = one iteration of one stage.

The GUI's worker thread, the CLI and the tests all drive the same object. Everything heavy
lives on ``device``; ``snapshot()`` hands out numpy copies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.profiler import record_function

from reflame_core.assets.flame import FlameTemplate, LandmarkEmbedding
from reflame_core.fit.config import FitConfig
from reflame_core.fit.dense import DenseCue, GeometricDenseCue
from reflame_core.fit.head_region import head_faces
from reflame_core.fit.jaw import OPEN_GAP, jaw_weights, lips_gap
from reflame_core.fit.landmark_outliers import LandmarkOutlier, find_outliers
from reflame_core.fit.regions import LEFT_EYEBALL, RIGHT_EYEBALL, region_labels, region_weights
from reflame_core.fit.scene import cameras_from_config, scan_to_canonical
from reflame_core.fit.stages.affine import AffineStage
from reflame_core.fit.stages.base import FitStage, NonFiniteStep
from reflame_core.fit.stages.deform import DeformStage
from reflame_core.fit.stages.eyeballs import EyeballStage
from reflame_core.fit.stages.jaw import JawStage
from reflame_core.fit.stages.lattice import LatticeStage
from reflame_core.fit.stages.rigid import RigidStage
from reflame_core.fit.targets import (
    LandmarkTargets,
    ScanTargets,
    build_scan_targets,
    landmark_view_weights,
)
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer
from reflame_core.texture.stage import TextureStage

# A stage whose steps are non-finite this many times in a row stops the fit with an error.
MAX_NON_FINITE_STEPS = 5


class NonFiniteStepError(RuntimeError):
    """A stage's steps were non-finite ``max_non_finite_steps`` times in a row.

    Attributes:
        stage: the stage's name.
        term: the loss term that was non-finite ("vertices" when only the result was).
    """

    def __init__(self, stage: str, term: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.term = term


@dataclass
class StepReport:
    """What one ``step()`` did: ``losses`` holds each loss term (unweighted) and ``total``.

    A skipped step (non-finite, undone) has the losses as measured and says so in ``event``;
    its ``iteration`` is the one that will be tried again.
    """

    stage: str
    iteration: int
    losses: dict[str, float]
    seconds: float
    event: str | None = None


@dataclass
class StageInfo:
    name: str
    status: str
    iteration: int
    num_steps: int
    end_reason: str | None = None  # "step_limit", "converged" or "skipped" once it ended


@dataclass
class FitSnapshot:
    """A consistent numpy copy of the session state for display and export.

    Attributes:
        vertices: (5023,3) float32 fitted vertices, canonical frame.
        stage: current stage name, or None when every stage has ended.
        iteration: iteration within the current stage.
        stages: status of every stage.
        history: every StepReport so far (oldest first).
        to_canonical: scan frame -> canonical frame.
        version: increases with every step.
        events: every event so far (oldest first).
        texture: (R,R,3) uint8 texture in FLAME UV space, or None before the texture stage.
        rigid: the rigid stage's similarity (template -> canonical frame), or None.
    """

    vertices: np.ndarray
    stage: str | None
    iteration: int
    stages: list[StageInfo]
    history: list[StepReport]
    to_canonical: Similarity
    version: int
    events: list[str] = field(default_factory=list)
    texture: np.ndarray | None = None
    rigid: Similarity | None = None


@dataclass
class _Checkpoint:
    """What one ``step()`` may change, as it was before (see ``FitSession.step``)."""

    vertices: torch.Tensor
    index: int
    # status, iteration, start_vertices, end_reason
    stages: list[tuple[str, int, torch.Tensor | None, str | None]]
    stage_state: object  # the current stage's ``save_state()``
    rigid: Similarity | None
    texture: np.ndarray | None
    pending_event: str | None


class FitSession:
    """Holds scan, template, cameras, landmarks, config and the fit state.

    Args:
        scan: the scan in its own frame and units.
        template: FLAME template (canonical frame).
        embedding: FLAME's 68-landmark embedding.
        landmarks: 3D landmark targets in the scan's frame, or None (rigid stage then falls
            back to moments; landmark terms are off).
        config: the full configuration.
        device: "cpu" or "cuda".
        seed: makes surface sampling reproducible.
        to_canonical: scan -> canonical frame (e.g. the studio's corrected frame); None:
            from ``frame.up`` / ``frame.front`` of the config.
    """

    def __init__(
        self,
        scan: Scan,
        template: FlameTemplate,
        embedding: LandmarkEmbedding,
        landmarks: LandmarkTargets | None,
        config: FitConfig,
        *,
        device: str = "cpu",
        seed: int = 0,
        render_backend: str = "auto",
        dense_cue: DenseCue | None = None,
        to_canonical: Similarity | None = None,
    ) -> None:
        torch.manual_seed(seed)
        self.seed = seed
        self.config = config
        self.device = device
        self.scan = scan
        self.template = template
        self.embedding = embedding
        self.to_canonical = to_canonical or scan_to_canonical(scan, config)
        # The part of the scan the fit matches, in the scan's frame and in the canonical one:
        # the whole scan, or a bust's head (``_leave_out_body``).
        self.fitted_scan = scan
        self.scan_canonical = scan.transformed(self.to_canonical)
        self.faces = torch.as_tensor(template.faces, dtype=torch.int64, device=device)
        self.template_vertices = torch.as_tensor(
            template.vertices, dtype=torch.float32, device=device
        )
        self.vertices = self.template_vertices.clone()
        self.labels = region_labels(template, embedding)
        self._jaw_weights: np.ndarray | None = None
        self.vertex_weights = torch.empty(0)
        self._update_region_weights()
        self.eyeball_mask = torch.zeros(template.num_vertices, dtype=torch.bool, device=device)
        self.eyeball_mask[LEFT_EYEBALL] = True
        self.eyeball_mask[RIGHT_EYEBALL] = True
        self._lmk_faces = torch.as_tensor(template.faces[embedding.face_idx], device=device)
        self._lmk_bary = torch.as_tensor(embedding.bary, dtype=torch.float32, device=device)
        self.render_backend = render_backend
        self.cameras = cameras_from_config(config.data["cameras"])
        self.renderer = MeshRenderer(self.cameras, backend=render_backend, device=device)
        self.dense_cue = dense_cue or GeometricDenseCue()
        self.rigid: Similarity | None = None
        self.texture: np.ndarray | None = None
        self.targets: ScanTargets | None = None
        self._target_samples = 0
        self.landmark_targets: LandmarkTargets | None = None
        self.history: list[StepReport] = []
        self.events: list[str] = []
        self.version = 0
        self._pending_event: str | None = None
        self.set_landmarks(landmarks)
        self._leave_out_body()
        # Largest side of the canonical scan's bounding box: the unit of robust kernels and
        # outlier reports (read every iteration, so computed once).
        self.head_height = float(self.scan_canonical.extent.max())
        self.stages: list[FitStage] = [
            RigidStage(),
            AffineStage(),
            JawStage(),
            LatticeStage(),
            DeformStage("coarse"),
            DeformStage("refine"),
            EyeballStage(),
            TextureStage(),
        ]
        self.index = 0
        self.max_non_finite_steps = MAX_NON_FINITE_STEPS
        self._non_finite_streak = 0
        self._skip_disabled()

    # ----- construction helpers -------------------------------------------------------
    def _update_region_weights(self) -> None:
        w = region_weights(self.labels, self.config.data["regions"])
        self.vertex_weights = torch.from_numpy(w).to(self.device)

    def _leave_out_body(self) -> None:
        """Leave the scan's shoulders, chest or body below FLAME's neck out of the fit
        (``fit/head_region.py``): ``fitted_scan`` and ``scan_canonical`` lose them, the scan
        itself (``self.scan``: what landmark files and outputs refer to) stays whole."""
        lm = self.landmark_targets
        if lm is None:
            return
        on_template = self.embedding_points(self.template_vertices).cpu().numpy()[lm.indices]
        keep = head_faces(self.scan_canonical.vertices, self.scan_canonical.faces,
                          self.template.vertices, self.template.faces, on_template, lm.points,
                          lm.weights)
        if keep is None or keep.all():
            return
        self.fitted_scan = self.scan.with_faces(keep)
        self.scan_canonical = self.fitted_scan.transformed(self.to_canonical)
        self.note(f"scan: {int((~keep).sum())} of {len(keep)} faces lie below the neck "
                  "(shoulders, chest): left out of the fit")

    # ----- state the stages share -----------------------------------------------------
    def embedding_points(self, vertices: torch.Tensor) -> torch.Tensor:
        """(68,D) FLAME landmark positions on vertices (5023,D), in their dtype; differentiable
        and linear in ``vertices`` (D=3 positions, or any per-vertex rows)."""
        bary = self._lmk_bary.to(vertices.dtype)
        return torch.einsum("lk,lkd->ld", bary, vertices[self._lmk_faces])

    @property
    def jaw_weights(self) -> np.ndarray:
        """(V,) float64: how much FLAME's jaw carries each template vertex (``fit/jaw.py``),
        0 on the skull; made on first use."""
        if self._jaw_weights is None:
            t = self.template
            self._jaw_weights = jaw_weights(t.vertices, t.faces,
                                            self.embedding.points(t.vertices, t.faces))
        return self._jaw_weights

    def mouth_open(self) -> bool:
        """Whether the landmark targets show the mouth open: inner lips more than
        ``fit/jaw.py: OPEN_GAP`` of the outer eye corners' span apart."""
        lm = self.landmark_targets
        if lm is None:
            return False
        use = lm.weights > 0
        gap = lips_gap(lm.indices[use], lm.points[use])
        return gap is not None and gap > OPEN_GAP

    def landmark_jaw_weights(self) -> np.ndarray:
        """(L,) float64: how much the jaw carries each landmark target's FLAME landmark."""
        faces = self.template.faces[self.embedding.face_idx]
        carried = (self.jaw_weights[faces] * self.embedding.bary).sum(1)
        return carried[self.landmark_targets.indices]

    def ensure_targets(self, num_samples: int) -> None:
        """Render the scan for the enabled views and sample it, unless already done."""
        views = self.cameras.enabled_indices()
        if (
            self.targets is not None
            and self.targets.view_ids == views
            and self._target_samples == num_samples
        ):
            return
        self.targets = build_scan_targets(
            self.scan_canonical, self.renderer, views, num_samples, self.device, self.seed
        )
        self._target_samples = num_samples
        self._update_landmark_views()

    def _update_landmark_views(self) -> None:
        lm = self.landmark_targets
        if lm is None or self.targets is None:
            return
        cfg = self.config.data["landmarks"]
        target_px, weight = landmark_view_weights(
            lm,
            self.cameras,
            self.targets.view_ids,
            self.targets.depth,
            float(cfg["frontal_range"]),
            cfg["group_weights_2d"],
        )
        # The 2D term is the deformation stages' only: sharpened as their 3D weights are.
        sharpen = torch.as_tensor(self._deform_sharpening(), device=weight.device)
        self.landmark_2d = (target_px, weight * sharpen[None, :])

    def note(self, message: str) -> None:
        """Record an event for the current step's report."""
        self._pending_event = (
            message if self._pending_event is None else (f"{self._pending_event}; {message}")
        )

    def record(self, message: str) -> None:
        """Record an event that happened between steps (an interruption, a stop): it goes
        into ``events`` at once, not into the next step's report."""
        self.events.append(message)
        self.version += 1

    # ----- commands ---------------------------------------------------------------------
    @property
    def current(self) -> FitStage | None:
        return self.stages[self.index] if self.index < len(self.stages) else None

    @property
    def done(self) -> bool:
        return self.current is None

    def stage(self, name: str) -> FitStage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage '{name}' (stages: {', '.join(s.name for s in self.stages)})")

    def step(self) -> StepReport:
        """Run one iteration of the current stage; advances to the next stage when it ends.

        A step is all or nothing: when anything in it raises (the stage's ``begin`` or
        ``step``, or moving on), the session is put back as it was before the step and the
        exception propagates; stepping again retries. A step whose losses or vertices are
        non-finite is undone the same way and skipped (an event says which term), and the
        stage may adjust (``FitStage.recover``); the ``max_non_finite_steps``-th such step in
        a row raises ``NonFiniteStepError`` instead.
        """
        stage = self.current
        if stage is None:
            return StepReport("done", 0, {}, 0.0, "all stages done")
        start = time.perf_counter()
        with record_function("checkpoint"):
            saved = self._checkpoint()
        try:
            return self._iterate(stage, saved, start)
        except BaseException:
            self._roll_back(saved)
            raise

    def _iterate(self, stage: FitStage, saved: _Checkpoint, start: float) -> StepReport:
        try:
            if stage.status == "pending":
                stage.start_vertices = self.vertices.detach().clone()
                stage.status = "running"
                stage.begin(self)
            losses = stage.step(self)
        except NonFiniteStep as bad:
            return self._skip_non_finite(stage, saved, bad.losses, bad.term, bad.what, start)
        term = _non_finite_term(losses, self.vertices)
        if term is not None:
            what = "vertices" if term == "vertices" else "loss"
            return self._skip_non_finite(stage, saved, losses, term, what, start)
        self._non_finite_streak = 0
        stage.iteration += 1
        seconds = time.perf_counter() - start
        limit = stage.num_steps(self)
        converged = stage.converged(self) if stage.iteration < limit else None
        if stage.iteration >= limit or converged:
            stage.status = "done"
            stage.end_reason = "converged" if converged else "step_limit"
            if converged:
                self.note(f"{stage.name}: {converged}; stopped at iteration {stage.iteration} "
                          f"of {limit}")
            self._advance()  # before the report: it carries why a following stage is skipped
        report = StepReport(stage.name, stage.iteration, losses, seconds, self._pending_event)
        self._record(report)
        return report

    def _skip_non_finite(
        self,
        stage: FitStage,
        saved: _Checkpoint,
        losses: dict[str, float],
        term: str,
        what: str,
        start: float,
    ) -> StepReport:
        """Undo a non-finite step, report it as skipped; raise when it keeps happening."""
        self._roll_back(saved)
        self._non_finite_streak += 1
        attempt = stage.iteration + 1
        problem = "non-finite vertices" if what == "vertices" else f"non-finite {what} in {term}"
        if self._non_finite_streak >= self.max_non_finite_steps:
            raise NonFiniteStepError(
                stage.name,
                term,
                f"{stage.name}: {problem} in {self._non_finite_streak} steps in a row "
                f"(iteration {attempt}); the fit is left as it was before. Check the inputs "
                f"that feed '{term}' (landmarks, scan, cameras) or lower the stage's weights "
                "or learning rate, then step again.",
            )
        change = stage.recover(self)
        self.note(
            f"{stage.name}: {problem} at iteration {attempt}: step skipped (rolled back"
            + (f"; {change})" if change else ")")
        )
        report = StepReport(
            stage.name, attempt, losses, time.perf_counter() - start, self._pending_event
        )
        self._record(report)
        return report

    def _record(self, report: StepReport) -> None:
        if report.event:
            self.events.append(report.event)
        self._pending_event = None
        self.history.append(report)
        self.version += 1

    def _checkpoint(self) -> _Checkpoint:
        cur = self.current
        return _Checkpoint(
            vertices=self.vertices.detach().clone(),
            index=self.index,
            stages=[(s.status, s.iteration, s.start_vertices, s.end_reason)
                    for s in self.stages],
            # A pending stage's begin() re-initialises it: only a running one has state.
            stage_state=cur.save_state() if cur is not None and cur.status == "running" else None,
            rigid=self.rigid,
            texture=self.texture,
            pending_event=self._pending_event,
        )

    def _roll_back(self, saved: _Checkpoint) -> None:
        self.vertices = saved.vertices.clone()
        self.index = saved.index
        for s, (status, iteration, start, end) in zip(self.stages, saved.stages, strict=True):
            s.status, s.iteration, s.start_vertices, s.end_reason = status, iteration, start, end
        cur = self.current
        if cur is not None and cur.status == "running":
            cur.load_state(saved.stage_state)
        self.rigid = saved.rigid
        self.texture = saved.texture
        self._pending_event = saved.pending_event

    def run(self, n: int | None = None) -> list[StepReport]:
        """``n`` steps, or to the end when ``n`` is None."""
        reports = []
        while not self.done and (n is None or len(reports) < n):
            reports.append(self.step())
        return reports

    def _advance(self) -> None:
        self.index += 1
        self._skip_disabled()

    def _skip_disabled(self) -> None:
        """Skip stages the config disables, and those that cannot run here (saying why)."""
        while self.current is not None:
            stage = self.current
            if stage.enabled(self):
                reason = stage.unavailable(self)
                if reason is None:
                    return
                self.note(f"{stage.name} stage skipped: {reason}")
            stage.status = "skipped"
            self.index += 1

    def skip_stage(self) -> None:
        """End the current stage where it is and move on."""
        if self.current is not None:
            self.current.status = "skipped" if self.current.iteration == 0 else "done"
            self.current.end_reason = "skipped"
            self._advance()
            self.version += 1

    def restart_stage(self) -> None:
        """Undo the current stage's iterations and start it again with its current params."""
        self.goto_stage(self.current.name if self.current else self.stages[-1].name)

    def goto_stage(self, name: str) -> None:
        """Make ``name`` the current stage, reset it and every later stage.

        Vertices return to where they were when that stage first began (if it ever did).
        """
        target = self.stage(name)
        i = self.stages.index(target)
        if target.start_vertices is not None:
            self.vertices = target.start_vertices.clone()
        for s in self.stages[i:]:
            s.reset()
        self.index = i
        self._non_finite_streak = 0
        self.version += 1

    def restore(self, snapshot: FitSnapshot) -> None:
        """Continue a fit from ``snapshot`` (one taken by a worker that has since died).

        The session must be built on the same scan and config. The vertices come back; stages
        before the snapshot's stage take the status it recorded ("done" unless "skipped");
        its stage becomes current, pending with its iteration kept, so its ``begin()``
        re-initialises from the restored vertices (optimiser moments are lost) and stepping
        continues to the stage's step count; later stages are reset. History, events, the
        rigid alignment and the texture come back too. ``snapshot.stage`` None restores a
        finished fit. After a restore, ``restart_stage`` returns to the restored vertices.

        Raises:
            ValueError: vertices not (V,3) or not finite, another scan frame, or an iteration
                outside the stage's steps.
            KeyError: a stage this session does not have.
        """
        vertices = np.asarray(snapshot.vertices, np.float32)
        if vertices.shape != tuple(self.template_vertices.shape):
            raise ValueError(
                f"restore: vertices must be {tuple(self.template_vertices.shape)}, "
                f"got {vertices.shape}"
            )
        if not np.isfinite(vertices).all():
            raise ValueError("restore: the snapshot's vertices are not all finite")
        if not _same_similarity(snapshot.to_canonical, self.to_canonical):
            raise ValueError("restore: the snapshot was taken on a scan in another frame")
        index = len(self.stages)
        if snapshot.stage is not None:
            index = self.stages.index(self.stage(snapshot.stage))
            steps = self.stages[index].num_steps(self)
            if not 0 <= snapshot.iteration < steps:
                raise ValueError(
                    f"restore: iteration {snapshot.iteration} is outside stage "
                    f"'{snapshot.stage}' ({steps} steps)"
                )
        recorded = {info.name: info for info in snapshot.stages}
        for i, s in enumerate(self.stages):
            s.reset()
            s.start_vertices = None
            info = recorded.get(s.name)
            if i < index:
                s.status = "skipped" if info is not None and info.status == "skipped" else "done"
                s.iteration = info.iteration if info is not None else s.num_steps(self)
                s.end_reason = getattr(info, "end_reason", None)
        if index < len(self.stages):
            self.stages[index].iteration = snapshot.iteration
        self.vertices = torch.as_tensor(vertices, device=self.device).clone()
        self.rigid = snapshot.rigid
        self.texture = snapshot.texture
        self.history = list(snapshot.history)
        self.events = list(snapshot.events)
        self.index = index
        self._non_finite_streak = 0
        self._pending_event = None
        where = snapshot.stage or "the end"
        self.note(f"restored at {where}, iteration {snapshot.iteration}")
        self._skip_disabled()
        self.version = max(self.version, snapshot.version) + 1

    def set_param(self, stage: str, name: str, value) -> None:
        """Change one parameter of a stage (or of a top-level section, with stage=section)."""
        if stage in self.config.data["stages"]:
            self.config.set(f"stages.{stage}.{name}", value)
            s = self.stage(stage)
            if s is self.current and s.status == "running":
                s.param_changed(self, name)
            return
        self.config.set(f"{stage}.{name}", value)
        if stage == "regions":
            self._update_region_weights()
        elif stage == "landmarks":
            self._update_landmark_weights()
        elif stage == "cameras":
            self.set_cameras(cameras_from_config(self.config.data["cameras"]))

    def set_cameras(self, cameras: OrbitCameras) -> None:
        """New views (count, range, enabled flags...): scan targets are rebuilt lazily."""
        self.cameras = cameras
        self.renderer = MeshRenderer(cameras, backend=self.render_backend, device=self.device)
        if self.targets is not None:
            self.ensure_targets(self._target_samples)

    def set_landmarks(self, landmarks: LandmarkTargets | None) -> None:
        """New 3D landmark targets, in the scan's own frame (as detected or edited)."""
        if landmarks is None:
            self.landmark_targets = None
            return
        raw = np.asarray(landmarks.points, np.float64)
        weights = np.asarray(landmarks.weights, np.float32).copy()
        indices = np.asarray(landmarks.indices, np.int64)
        missing = ~np.isfinite(raw).all(1)
        if missing.any():
            # A landmark that could not be placed: a NaN target would make every landmark
            # term (and the rigid alignment) NaN, so it is dropped, and said so.
            raw = np.where(missing[:, None], 0.0, raw)
            weights[missing] = 0.0
            self.note(f"landmarks {indices[missing].tolist()} are not finite: ignored")
        pts = self.to_canonical.apply(raw).astype(np.float32)
        lm = LandmarkTargets(indices, pts, weights, list(landmarks.groups), landmarks.trusted,
                             landmarks.confidence)
        self.landmark_targets = lm
        self.landmark_index = torch.as_tensor(lm.indices, device=self.device)
        self.landmark_points = torch.as_tensor(lm.points, device=self.device)
        self._update_landmark_weights()

    def _update_landmark_weights(self) -> None:
        """The landmark weights of every stage from the targets and ``[landmarks]``."""
        lm = self.landmark_targets
        if lm is None:
            return
        w3 = self.config.data["landmarks"]["group_weights_3d"]
        self.landmark_weight_3d = torch.as_tensor(
            lm.weights * np.array([w3.get(g, 1.0) for g in lm.groups], np.float32),
            device=self.device,
        )
        self.landmark_weight_deform = self.landmark_weight_3d * torch.as_tensor(
            self._deform_sharpening(), device=self.device)
        self._update_landmark_views()

    @property
    def landmark_certainty(self) -> float:
        """How certain the landmark set is, 0-1: the mean of confidence **
        ``landmarks.confidence_power`` over the landmarks in use. 1 for exact ones (an
        artist's, a file's without confidences), under 0.05 for detections; 0 without any."""
        lm = self.landmark_targets
        active = np.zeros(0, bool) if lm is None else lm.weights > 0
        if not active.any():
            return 0.0
        return float(np.mean(lm.confidence[active] * self._deform_sharpening()[active]))

    def _deform_sharpening(self) -> np.ndarray:
        """(L,) confidence ** (``landmarks.confidence_power`` - 1): on weights that already
        hold the confidence once, the deformation stages weigh it to the full power.

        The landmarks the views disagree on tend to be the ones far off, and in the
        deformation each pulls the face along the surface after its own error. The rigid and
        affine stages keep the plain weights: there the jaw line's uncertain points still
        help hold the back of the head."""
        lm = self.landmark_targets
        power = float(self.config.data["landmarks"]["confidence_power"])
        return np.maximum(lm.confidence, 1e-6) ** (power - 1.0)

    # ----- read-out -----------------------------------------------------------------------
    def snapshot(self, history_since: int = 0) -> FitSnapshot:
        """A copy of the state; ``history`` holds the records from ``history_since`` on (a
        worker publishing many times a second sends only the new ones)."""
        cur = self.current
        return FitSnapshot(
            vertices=self.vertices.detach().cpu().numpy().copy(),
            stage=cur.name if cur else None,
            iteration=cur.iteration if cur else 0,
            stages=[
                StageInfo(s.name, s.status, s.iteration, s.num_steps(self), s.end_reason)
                for s in self.stages
            ],
            history=self.history[history_since:],
            to_canonical=self.to_canonical,
            version=self.version,
            events=list(self.events),
            texture=self.texture,
            rigid=self.rigid,
        )

    def landmark_outliers(self) -> list[LandmarkOutlier]:
        """Detected landmarks the current fit contradicts (robust weight below
        ``landmarks.outlier_weight``), largest residual first; see ``fit/landmark_outliers.py``."""
        return find_outliers(self)

    def vertices_in_scan_frame(self) -> np.ndarray:
        """(5023,3) fitted vertices in the scan's own frame and units."""
        v = self.vertices.detach().cpu().numpy().astype(np.float64)
        return self.to_canonical.inverse().apply(v).astype(np.float32)

    def landmarks_in_scan_frame(self) -> np.ndarray:
        """(68,3) float64 FLAME's landmarks on the fitted vertices, in the scan's own frame
        and units (the fit's own reading of where the landmarks are)."""
        lm = self.embedding_points(self.vertices.detach()).cpu().numpy().astype(np.float64)
        return self.to_canonical.inverse().apply(lm)

    def residual_images(self, views: list[int]) -> dict[str, np.ndarray]:
        """Per-view diagnostics for ``views``: silhouette difference (B,H,W) fit minus scan,
        depth residual (B,H,W) where both cover, landmark pixels of fit and scan (B,L,2)."""
        self.ensure_targets(self._target_samples or 8000)
        with torch.no_grad():
            fit = self.renderer.render(self.vertices, self.faces, views=views)
            scan_v = torch.as_tensor(self.scan_canonical.vertices, device=self.device)
            scan_f = torch.as_tensor(self.scan_canonical.faces, device=self.device)
            scan = self.renderer.render(scan_v, scan_f, views=views)
        both = (fit.tri_id >= 0) & (scan.tri_id >= 0)
        out = {
            "mask_diff": (fit.mask - scan.mask)[..., 0].cpu().numpy(),
            "depth_residual": torch.where(
                both, fit.depth[..., 0] - scan.depth[..., 0], torch.zeros_like(fit.depth[..., 0])
            )
            .cpu()
            .numpy(),
        }
        if self.landmark_targets is not None:
            pred = self.embedding_points(self.vertices)[self.landmark_index]
            out["landmarks_fit_px"] = self.cameras.project(pred, views)[0].cpu().numpy()
            out["landmarks_scan_px"] = self.cameras.project(self.landmark_targets.points, views)[0]
        return out


def _non_finite_term(losses: dict[str, float], vertices: torch.Tensor) -> str | None:
    """The first non-finite loss term ("total" last), "vertices" when only they are, or None."""
    for name, value in sorted(losses.items(), key=lambda kv: kv[0] == "total"):
        if not math.isfinite(value):
            return name
    return None if bool(torch.isfinite(vertices).all()) else "vertices"


def _same_similarity(a: Similarity, b: Similarity) -> bool:
    """Whether two similarities map points alike (to float32 precision)."""
    probe = np.eye(4, 3) * 10.0
    pa, pb = a.apply(probe), b.apply(probe)
    return bool(np.allclose(pa, pb, rtol=1e-5, atol=1e-5 * float(np.abs(pb).max() + 1.0)))
