"""Write ``hs39.csv``, the SEM input of the README tour (rerun to regenerate it).

``hs39.csv`` holds the Holzinger & Swineford (1939) mental-ability scores of 301 children (columns
school, x1..x9), the classic confirmatory factor analysis example of lavaan and most SEM texts, for
``counterfeed sem fit``; it is copied from the reference data. (``ope_log.csv``, the tour's
off-policy log, is described in docs/ope.md.)

    python examples/make_examples.py ../shared/reference/holzinger_swineford1939.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_hs39(source: Path, path: Path) -> None:
    """Keep the school and the nine test scores of each child, in the source's order."""
    with source.open(newline="") as fh, path.open("w", newline="") as out:
        rows = csv.DictReader(fh)
        w = csv.writer(out)
        cols = ["school"] + [f"x{i}" for i in range(1, 10)]
        w.writerow(cols)
        for row in rows:
            w.writerow([row[c] for c in cols])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="holzinger_swineford1939.csv (id, sex, ..., x1..x9)")
    write_hs39(ap.parse_args().source, HERE / "hs39.csv")


if __name__ == "__main__":
    main()
