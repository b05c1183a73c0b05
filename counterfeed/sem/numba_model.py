"""The SEM as a nutpie model without PyMC: structure and data packed into one array for the
cached numba density of :mod:`counterfeed.sem._numba_logp`.

:func:`pack` translates the parameter table and the shared data of
:func:`counterfeed.sem.model.data_arrays` into that array, mirroring
:func:`counterfeed.sem.model.build_pymc_model` term by term (the PyMC model stays the reference:
tests compare the two densities and gradients). :func:`compiled_model` wraps it as nutpie's
``CompiledPyMCModel`` (nutpie/compile_pymc.py: a logp C callback, an expand C callback and a
``user_data`` pointer), so nothing is compiled per model or per process.
"""

from __future__ import annotations

import math

import numpy as np

from counterfeed.sem.model import _cov_blocks, _groups, fixed_covariances, scale_exponents

__all__ = ["pack", "compiled_model", "add_defined", "unsupported"]

_FAMILY = {"normal": 0, "halfnormal": 1, "lognormal": 2, "exponential": 3, "uniform": 4, "beta": 5}
_TRANSFORM = {"normal": 0, "halfnormal": 1, "lognormal": 1, "exponential": 1, "uniform": 2,
              "beta": 3}
_KINDS = {"loading", "regression", "exog", "variance", "covariance", "intercept"}


def unsupported(table) -> str | None:
    """Why the numba density cannot represent ``table`` (None when it can)."""
    kinds = {r.kind for r in table.param_rows()} - _KINDS
    if kinds:
        return f"parameter kind(s) {', '.join(sorted(kinds))}"
    return None


def _prior_row(family: str, args) -> list[float]:
    a = float(args[0])
    b = float(args[1]) if len(args) > 1 else 0.0
    const = {"normal": lambda: -math.log(b) - 0.5 * math.log(2 * math.pi),
             "halfnormal": lambda: 0.5 * math.log(2 / math.pi) - math.log(a),
             "lognormal": lambda: -math.log(b) - 0.5 * math.log(2 * math.pi),
             "exponential": lambda: math.log(a),
             "uniform": lambda: -math.log(b - a),
             "beta": lambda: math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)}[family]()
    return [_TRANSFORM[family], _FAMILY[family], a, b, const, 0.0]


def _to_unconstrained(family: str, args, v: float) -> float:
    t = _TRANSFORM[family]
    if t == 0:
        return v
    if t == 1:
        return math.log(v)
    lo, hi = (args[0], args[1]) if t == 2 else (0.0, 1.0)
    u = (v - lo) / (hi - lo)
    return math.log(u) - math.log1p(-u)


def pack(table, data: dict[str, np.ndarray]):
    """(spec array, initial unconstrained point, unconstrained names) for ``table`` and ``data``."""
    from counterfeed.sem import _numba_logp as nl

    names = table.observed + table.latents
    idx = {v: i for i, v in enumerate(names)}
    xi = {x: j for j, x in enumerate(table.exogenous)}
    m, p, q = len(names), len(table.observed), len(table.exogenous)
    logk = np.log(data["k_all"])
    rows = table.param_rows()
    first_of = {}
    for r in table.free_rows():
        first_of.setdefault(r.id, r)

    def f_of(rs):
        return np.exp(scale_exponents(table, rs) @ logk)

    prior, init, unames, theta_of = [], [], [], {}
    for fam, members in _groups(table).items():
        is_cov = fam.endswith("_cov")
        family = fam.removesuffix("_cov")
        fs = f_of([r for _, _, _, r in members])
        for t, (pid, pr, units, r) in enumerate(members):
            if is_cov:
                args = pr.args if family == "beta" else tuple((v + 1) / 2 for v in pr.args)
                start = 0.5
            else:
                args = pr.scaled(float(fs[t]))[1] if units == "orig" else pr.args
                start = r.start
            theta_of[pid] = len(prior)
            prior.append(_prior_row(family, args))
            init.append(0.0 if family == "uniform" else _to_unconstrained(family, args, start))
            unames.append(f"{'cpc' if is_cov else 'z'}_{fam}_{t}")

    core = [r for r in rows if r.kind in ("loading", "regression", "exog", "variance")]
    f_row = f_of(core)
    f_first = f_of([first_of[r.id] if r.free else r for r in core])
    core_tab = []
    for t, r in enumerate(core):
        if r.kind == "loading":
            tgt, i, j = nl.C_A, idx[r.rhs], idx[r.lhs]
        elif r.kind == "regression":
            tgt, i, j = nl.C_A, idx[r.lhs], idx[r.rhs]
        elif r.kind == "exog":
            tgt, i, j = nl.C_B, idx[r.lhs], xi[r.rhs]
        else:
            tgt, i, j = nl.C_V, idx[r.lhs], 0
        zi = theta_of[r.id] if r.free else -1
        coef = f_first[t] / f_row[t] if r.free else 0.0
        const = 0.0 if r.free else r.value / f_row[t]
        core_tab.append([tgt, i, j, zi, coef, const])

    covs = [r for r in rows if r.kind == "covariance" and r.free]
    blocks = [b for b in _cov_blocks(covs) if len(b["vars"]) >= 3 and b["complete"]] if covs else []
    cov_tab = [[idx[r.lhs], idx[r.rhs], theta_of[r.id], -1, 0, 0] for r in covs]
    cov_pos = {r.key: t for t, r in enumerate(covs)}
    blk_tab, blk_idx = [], []
    for b, blk in enumerate(blocks):
        d, pos = len(blk["vars"]), {v: i for i, v in enumerate(blk["vars"])}
        mat = -np.ones((d, d))
        for r in blk["rows"]:
            i, j = max(pos[r.lhs], pos[r.rhs]), min(pos[r.lhs], pos[r.rhs])
            mat[i, j] = theta_of[r.id]
            cov_tab[cov_pos[r.key]][3:] = [b, i, j]
        blk_tab.append([d, len(blk_idx)])
        blk_idx.extend(mat.ravel().tolist())

    c, k = data["c_obs"], data["k_all"]
    int_tab = np.zeros((p, 3))
    int_tab[:, 0] = -1
    for r in rows:
        if r.kind == "intercept":
            i = idx[r.lhs]
            if r.free:
                int_tab[i, 0] = theta_of[r.id]
            else:
                int_tab[i, 1:] = [1.0, (r.value - c[i]) / k[i]]
    fixed = fixed_covariances(table)
    fix_tab = [[idx[r.lhs], idx[r.rhs], v] for r, v in zip(fixed, data.get("fixed_cov", []))]

    par_tab = []
    for r in table.free_rows():
        if r.kind == "intercept":
            par_tab.append([nl.P_INT, idx[r.lhs], 0.0])
        elif r.kind == "covariance":
            par_tab.append([nl.P_COV, cov_pos[r.key], 0.0])
        else:
            t = next(t for t, rr in enumerate(core) if rr.key == r.key)
            par_tab.append([nl.P_CORE, theta_of[r.id], f_first[t]])

    cholW = data["cholW"]
    sections = [prior, core_tab, cov_tab, blk_tab, blk_idx, int_tab, fix_tab, k, c, data["xg"],
                data["ng"], data["mg"], cholW @ cholW.T, par_tab]
    flat = [np.asarray(s, dtype=float).ravel() for s in sections]
    header = np.zeros(nl.HEADER)
    off = nl.HEADER
    for s, arr in enumerate(flat):
        header[16 + s] = off
        off += arr.size
    header[[nl.H_LEN, nl.H_NTH, nl.H_M, nl.H_P, nl.H_Q, nl.H_G, nl.H_NCORE, nl.H_NCOV, nl.H_NBLK,
            nl.H_NPAR, nl.H_NTOT, nl.H_NFIXCOV]] = [
        off, len(prior), m, p, q, len(data["ng"]), len(core_tab), len(cov_tab), len(blk_tab),
        len(par_tab), float(data["n_total"]), len(fix_tab)]
    spec = np.ascontiguousarray(np.concatenate([header, *flat]))
    return spec, np.array(init, dtype=float), unames


def compiled_model(table, data: dict[str, np.ndarray]):
    """nutpie ``CompiledPyMCModel`` backed by the cached numba callbacks (no compilation)."""
    import pandas as pd
    from nutpie.compile_pymc import CompiledPyMCModel

    from counterfeed.sem import _numba_logp as nl

    spec, init, unames = pack(table, data)
    spec.flags.writeable = False
    keys = [r.key for r in table.free_rows()]
    npar = len(keys)

    def initial_point(seed=None):
        return init.copy()

    return CompiledPyMCModel(
        dims={"params": ("param",)},
        _n_dim=len(init),
        _coords={"param": pd.Index(keys), "unconstrained_parameter": pd.Index(unames)},
        _shapes={"params": (npar,)},
        compiled_logp_func=nl.logp_cfunc,
        compiled_expand_func=nl.expand_cfunc,
        initial_point_func=initial_point,
        shared_data={},
        user_data=spec,
        n_expanded=npar,
        shape_info=(["params"], [slice(0, npar)], [(npar,)]),
        logp_func=None,
        expand_func=None,
    )


def add_defined(table, idata) -> None:
    """Add the ``:=`` quantities (Deterministic ``defined`` of the PyMC model) to the posterior."""
    if not table.definitions:
        return
    import xarray as xr

    from counterfeed.sem.syntax import eval_expr

    post = idata.posterior
    params = post["params"]
    free_pos = {r.key: j for j, r in enumerate(table.free_rows())}
    env = {}
    for r in table.param_rows():
        if r.label and r.label not in env:
            env[r.label] = (params.isel(param=free_pos[r.key]).values if r.free else r.value)
    vals = []
    for d in table.definitions:
        env[d.name] = eval_expr(d.expr, env)
        vals.append(np.broadcast_to(env[d.name], params.shape[:2]))
    arr = xr.DataArray(np.stack(vals, axis=-1), dims=("chain", "draw", "quantity"),
                       coords={"chain": post["chain"], "draw": post["draw"],
                               "quantity": [d.name for d in table.definitions]})
    idata.posterior["defined"] = arr
