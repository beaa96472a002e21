"""Control arm for bench/camera_cpu.py's `prope_rays`: the same model, dims and training, with the
camera transform replaced by the identity — each head's `prope_dims` camera dims then carry no
position and no camera. Separates what the camera transform does from what its dims do.

    python bench/prope_control_cpu.py --arms prope_rays --steps 400

(the arm's name is kept; its figures are the control's). Same arguments as bench/camera_cpu.py.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so the packages are found)

import pathlib  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

import training.model  # noqa: E402


def identity(x: torch.Tensor, matrices: torch.Tensor, dims: int) -> torch.Tensor:
    return x


if __name__ == "__main__":
    training.model.transform = identity  # this process only: the control's one difference
    here = pathlib.Path(__file__).resolve().parent
    sys.argv = [str(here / "camera_cpu.py"), *sys.argv[1:]]
    runpy.run_path(str(here / "camera_cpu.py"), run_name="__main__")
