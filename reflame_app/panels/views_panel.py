"""Views panel: orbit layout, per-view enable checkboxes, look-through, per-view images."""

from __future__ import annotations

import polyscope as ps
import polyscope.imgui as psim

from reflame_app.panels.widgets import button
from reflame_app.scene import SceneSync, camera_parameters
from reflame_app.state.app_state import AppState


class ViewsPanel:
    def __init__(self) -> None:
        self.elevations_text = ""
        self.waiting_images = False

    def draw(self, app: AppState, scene: SceneSync) -> None:
        if not psim.CollapsingHeader("Views"):
            return
        views = app.views
        cams = views.cameras
        with app.messages.guard("Changing the view layout"):
            ch1, n = psim.SliderInt("views per ring", cams.num_views, 1, 80)
            ch2, az = psim.SliderFloat("azimuth range (deg)", cams.azimuth_range, 0.0, 180.0)
            ch3, res = psim.SliderInt("resolution (px)", cams.resolution, 64, 1024)
            if not self.elevations_text:
                self.elevations_text = ", ".join(f"{e:g}" for e in cams.elevations)
            ch4, self.elevations_text = psim.InputText("elevation rings (deg)",
                                                        self.elevations_text)
            if ch1 or ch2 or ch3:
                views.set_layout(num_views=n, azimuth_range=az, resolution=res)
            if ch4 and psim.IsItemDeactivatedAfterEdit() or psim.SmallButton("apply rings"):
                rings = [float(x) for x in self.elevations_text.replace(";", ",").split(",")
                         if x.strip()]
                views.set_layout(elevations=rings)
        if psim.SmallButton("enable all"):
            views.set_all_enabled(True)
        psim.SameLine()
        if psim.SmallButton("disable all"):
            views.set_all_enabled(False)
        psim.Text(f"{int(views.enabled.sum())} of {views.num_total} views enabled")
        if psim.BeginChild("view list", (0, 160)):
            for i in range(views.num_total):
                psim.PushID(str(i))
                changed, on = psim.Checkbox("##on", bool(cams.enabled[i]))
                if changed:
                    views.set_enabled(i, on)
                psim.SameLine()
                if psim.Selectable(views.label(i), views.selected == i):
                    self.look_through(app, i, scene)
                psim.PopID()
        psim.EndChild()
        sel = views.selected
        if sel is not None:
            psim.Text(f"Looking through view {sel}")
            psim.SameLine()
            if psim.SmallButton("back to the head view"):
                views.selected = None
                scene.set_looked_through(None)
                scene.frame_request = True
            if button("Compute residual images of this view", app.controller is not None):
                with app.messages.guard("Rendering the view"):
                    app.request_view_images(sel)
                    self.waiting_images = True
        if scene.residual_captions:
            psim.TextWrapped("Residual images (window beside this panel): "
                             + " | ".join(scene.residual_captions))

    def poll_images(self, app: AppState, scene: SceneSync) -> None:
        """Show requested residual images once the engine has them (every frame, also while
        this panel is collapsed)."""
        if self.waiting_images:
            images = app.view_images()
            if images is not None:
                scene.show_images(images)
                self.waiting_images = False

    @staticmethod
    def look_through(app: AppState, view: int, scene: SceneSync) -> None:
        """Put Polyscope's viewer camera at an orbit view (same pose and field of view) at
        once, without a camera flight, and hide that view's own frustum."""
        eye, target, fov = app.views.look_through(view)
        up = camera_parameters(eye, target, fov).get_up_dir()
        ps.look_at_dir(eye, target, up, fly_to=False)
        ps.set_vertical_fov_degrees(fov)
        scene.set_looked_through(view)
