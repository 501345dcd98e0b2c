"""``python -m ccr_core.data.demo_world OUT_DIR [--seed N] ...``: build the demo world from the shell."""
from __future__ import annotations

import argparse

from .build import build_demo_world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-video", type=int, nargs=3, default=(300, 50, 100), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--captions-per-image", type=int, default=2)
    parser.add_argument("--mt-error-rate", type=float, default=0.2)
    parser.add_argument("--noisy-correspondence-rate", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    build_demo_world(
        args.out_dir, seed=args.seed, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, n_video=tuple(args.n_video),
        captions_per_image=args.captions_per_image, mt_error_rate=args.mt_error_rate,
        noisy_correspondence_rate=args.noisy_correspondence_rate, workers=args.workers,
    )


if __name__ == "__main__":
    main()
