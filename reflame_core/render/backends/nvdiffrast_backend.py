"""The CUDA backend: nvdiffrast.torch (PyPI distribution ``diffrp-nvdiffrast``).

Loading the plugin. nvdiffrast JIT-compiles its CUDA plugin on first use
(``nvdiffrast.torch.ops._get_plugin``): it calls
``torch.utils.cpp_extension._import_module_from_library`` / ``load`` to build and load the
module named ``nvdiffrast_plugin_<version>_torch<torch version>`` (sanitised) in
``torch.utils.cpp_extension._get_build_directory(name)`` (under ``$TORCH_EXTENSIONS_DIR`` or
the default torch extensions root), then imports it a second time with
``importlib.import_module(name)``. Older torch put that build folder on ``sys.path``;
newer torch (seen with 2.11) loads the .so from its path without doing so, so the second import
fails with ``ModuleNotFoundError: nvdiffrast_plugin_...`` even though the build succeeded.
``load_nvdiffrast`` puts the build folder on ``sys.path`` *before* nvdiffrast's loader runs
(computing the name as nvdiffrast does) and, should the name still be missed (another
naming scheme), retries once with the folder of the module named in the error.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from types import ModuleType

import torch

from reflame_core.errors import ReflameError


class BackendUnavailableError(ReflameError):
    """A rendering backend cannot run here (no CUDA, no nvcc, package missing)."""


def _add_build_dir(module_name: str) -> None:
    import torch.utils.cpp_extension as cpp_ext

    build_dir = cpp_ext._get_build_directory(module_name, False)
    if build_dir not in sys.path:
        sys.path.insert(0, build_dir)
    importlib.invalidate_caches()


def load_nvdiffrast() -> ModuleType:
    """Import ``nvdiffrast.torch`` and make sure its CUDA plugin is built and importable.

    Returns the ``nvdiffrast.torch`` module. Raises BackendUnavailableError with the reason
    when CUDA, nvcc or the package is missing, or the plugin cannot be built.
    """
    if not torch.cuda.is_available():
        raise BackendUnavailableError("nvdiffrast backend needs a CUDA GPU; torch sees none")
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if shutil.which("nvcc") is None and not (cuda_home and os.path.exists(
            os.path.join(cuda_home, "bin", "nvcc"))):
        raise BackendUnavailableError(
            "nvdiffrast backend needs nvcc (CUDA toolkit) to JIT-compile its plugin; "
            "put nvcc on PATH or set CUDA_HOME"
        )
    try:
        import nvdiffrast
        import nvdiffrast.torch as dr
        from nvdiffrast.torch import ops
    except ImportError as exc:
        raise BackendUnavailableError(
            f"nvdiffrast is not installed ({exc}); pip install diffrp-nvdiffrast"
        ) from exc
    name = ops.sanitize_name(f"nvdiffrast_plugin_{nvdiffrast.__version__}_torch{torch.__version__}")
    _add_build_dir(name)
    try:
        try:
            ops._get_plugin(gl=False)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("nvdiffrast_plugin"):
                raise
            _add_build_dir(exc.name)
            ops._get_plugin(gl=False)
    except Exception as exc:  # compiler errors come as RuntimeError/OSError/ImportError
        raise BackendUnavailableError(
            f"nvdiffrast plugin could not be built/loaded: {exc}"
        ) from exc
    return dr


class NvdiffrastBackend:
    """nvdiffrast.torch with a RasterizeCudaContext; the same interface as TorchBackend
    (single tensors are returned: the derivative outputs nvdiffrast offers are not used)."""

    name = "nvdiffrast"

    def __init__(self, device: str | torch.device = "cuda"):
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise BackendUnavailableError(f"nvdiffrast backend needs a CUDA device, got {device}")
        self.dr = load_nvdiffrast()
        self.ctx = self.dr.RasterizeCudaContext(device=self.device)

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor,
                  resolution: tuple[int, int]) -> torch.Tensor:
        """[B,V,4], [F,3] int32, (H,W) -> rast [B,H,W,4] (u, v, z/w, tri_id+1)."""
        rast, _ = self.dr.rasterize(self.ctx, pos_clip.float().contiguous(),
                                    tri.to(torch.int32).contiguous(), tuple(resolution))
        return rast

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor,
                    tri: torch.Tensor) -> torch.Tensor:
        """[V,C] | [B|1,V,C], rast, [F,3] -> [B,H,W,C]."""
        out, _ = self.dr.interpolate(attr.float().contiguous(), rast,
                                     tri.to(torch.int32).contiguous())
        return out

    def texture(self, tex: torch.Tensor, uv: torch.Tensor,
                boundary_mode: str = "wrap") -> torch.Tensor:
        """[B|1,Ht,Wt,C], [B,H,W,2] -> [B,H,W,C], bilinear."""
        return self.dr.texture(tex.float().contiguous(), uv.float().contiguous(),
                               filter_mode="linear", boundary_mode=boundary_mode)

    def topology(self, tri: torch.Tensor):
        """Reusable per-mesh data for ``antialias`` (nvdiffrast's topology hash)."""
        return self.dr.antialias_construct_topology_hash(tri.to(self.device, torch.int32))

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, pos_clip: torch.Tensor,
                  tri: torch.Tensor, topology=None) -> torch.Tensor:
        """[B,H,W,C] -> [B,H,W,C] with analytic silhouette blending."""
        return self.dr.antialias(color.float().contiguous(), rast, pos_clip.float().contiguous(),
                                 tri.to(torch.int32).contiguous(), topology_hash=topology)
