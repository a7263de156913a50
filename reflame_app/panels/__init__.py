"""Thin ImGui drawing of the panel state objects (Polyscope's own ImGui bindings)."""
