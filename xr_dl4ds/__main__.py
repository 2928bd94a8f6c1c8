"""``python -m xr_dl4ds``: the ``xr-dl4ds`` command (works under ``torchrun -m xr_dl4ds``)."""

from xr_dl4ds.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
