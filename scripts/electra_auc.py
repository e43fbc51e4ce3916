"""Does ELECTRA's discriminator learn? Held-out AUC of four recipes, for the ELECTRA page.

    python scripts/electra_auc.py            # train the arms, store docs/results/electra-auc/
    python scripts/electra_auc.py --redraw   # draw again from the stored results.json
    python scripts/electra_auc.py --quick    # a check that it runs, into runs/ (not a result)

The arms and their drawing live on the ELECTRA experiment page (`auc_experiment`, `draw_auc` in
labnotes/experiments/electra.py); this script only stores them, as `labnotes experiment` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

from labnotes.experiments import electra
from labnotes.experiments.common import redraw, run

OUT = Path("docs/results/electra-auc")
COMMAND = "OMP_NUM_THREADS=1 python scripts/electra_auc.py"
EXPERIMENT = SimpleNamespace(__name__="electra_auc", run_experiment=electra.auc_experiment,
                             draw=electra.draw_auc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redraw", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = Path("runs/experiment-electra_auc/quick-results") if args.quick else OUT
    if args.redraw:
        redraw(EXPERIMENT, out)
    else:
        run(EXPERIMENT, out, command=COMMAND + (" --quick" if args.quick else ""),
            quick=args.quick)
    print(f"wrote {out}/")


if __name__ == "__main__":
    main()
