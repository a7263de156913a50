"""ReFLAME Studio: the interactive Polyscope app on top of ``reflame_core``.

Panel logic lives in screen-free state objects (``reflame_app.state``); the ``panels`` modules
only draw them with Polyscope's ImGui bindings, and ``scene`` mirrors the state into Polyscope
structures. Nothing here computes what the core already computes.
"""
