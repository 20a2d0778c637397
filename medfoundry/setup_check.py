"""Post-install guard run by `make setup`: the environment must not hold torchvision/torchaudio.

transformers imports torchvision whenever it is importable, and the CUDA-linked builds that pip resolves here fail to
import, which breaks every model. We remove them rather than leave a broken environment behind.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

FORBIDDEN = ("torchvision", "torchaudio", "torchcodec")


def main() -> int:
    present = [name for name in FORBIDDEN if importlib.util.find_spec(name) is not None]
    if present:
        print(f"medfoundry setup: removing {', '.join(present)} (they break transformers on CPU torch)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "uv", "pip", "uninstall", "--python", sys.executable, *present], check=False)
        importlib.invalidate_caches()
        still = [name for name in present if importlib.util.find_spec(name) is not None]
        if still:
            print(f"medfoundry setup: could not remove {', '.join(still)}; uninstall them by hand", file=sys.stderr)
            return 1
    import torch

    if not torch.__version__.startswith("2.13.0"):
        print(f"medfoundry setup: expected torch 2.13.0, found {torch.__version__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
