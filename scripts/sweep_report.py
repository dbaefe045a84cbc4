"""Summarise a Hydra multirun sweep (runs/multirun/<date_time>/) as report.md, report.csv and loss_curves.png.

    .venv/bin/python scripts/sweep_report.py sweep_dir=runs/multirun/<date_time> [out=<folder>]

Settings: configs/sweep_report.yaml. Exit status 0; 2 for a bad setting or sweep directory (one error line).
"""

from __future__ import annotations

import sys

from evaluation.sweep import SweepError, collect_runs, write_report
from sampling.checks import InputError
from sampling.cli import compose_config, to_dict


def main(argv: list[str] | None = None) -> int:
    """Report on a sweep directory: print report.md and the written paths; 0 on success, 2 on bad input."""
    try:
        cfg = to_dict(compose_config("sweep_report", list(sys.argv[1:] if argv is None else argv)))
        runs = collect_runs(cfg["sweep_dir"])
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SweepError as err:
        print(f"sweep_report: error: {err}", file=sys.stderr)
        return 2
    paths = write_report(runs, cfg["out"] if cfg["out"] is not None else cfg["sweep_dir"])
    print(paths["markdown"].read_text())
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
