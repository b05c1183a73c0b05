"""A regression of one outcome on the 0/1 arm indicator compiles (it never returned before).

The sem estimator's conformance model, ``clicks ~ b*treatment``, has two exogenous groups; PyTensor's
``local_zero_div`` and ``constant_folding`` rewrites cycled forever on its graph inside nutpie's
``rewrite_graph``. The test fits it in a subprocess with a time limit (35 s on a quiet machine), so a
regression fails instead of hanging.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np, pandas as pd
    from counterfeed.sem import SEM
    rng = np.random.default_rng(0)
    t = (rng.random(200) < 0.5).astype(float)
    df = pd.DataFrame({"clicks": rng.poisson(3 + t).astype(float), "treatment": t})
    sem = SEM("clicks ~ b*treatment\\ntotal := b", exogenous=["treatment"])
    fit = sem.fit(df, draws=50, tune=50, chains=1, seed=1)
    print("fitted", round(float(fit.draws("total").mean()), 2))
""")


@pytest.mark.slow
def test_sem_regression_on_treatment_compiles():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fitted" in proc.stdout
