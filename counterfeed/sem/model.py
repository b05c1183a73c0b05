"""The PyMC model: RAM (all-y) SEM on the standardized scale, likelihood from sufficient statistics.

Every observed variable is centred by its mean ``c`` and divided by its SD ``k``; each latent takes
its marker indicator's scale (or 1 with ``std_lv``). Parameters are sampled on that scale
(``theta* = theta / f``, e.g. ``f = k_i / k_j`` for the path j -> i, ``k_i k_j`` for a covariance)
and reported in original units as the Deterministic ``params``. The scales are shared data, so one
compiled model serves any data set with the same structure.
"""

from __future__ import annotations

import warnings

import numpy as np

from counterfeed.sem.errors import SEMModelError
from counterfeed.sem.priors import parse_prior
from counterfeed.sem.stats import SufficientStats
from counterfeed.sem.syntax import eval_expr

__all__ = ["build_pymc_model", "data_arrays", "fixed_covariances", "initial_values",
           "latent_scales", "scale_exponents"]


def latent_scales(table) -> dict[str, str | None]:
    """Marker indicator (an observed variable) whose SD sets each latent's scale; None = unit."""
    out: dict[str, str | None] = {}
    first = {}
    for r in table.param_rows():
        if r.kind == "loading":
            first.setdefault(r.lhs, r.rhs)
    for lv in table.latents:
        if table.std_lv:
            out[lv] = None
            continue
        ind, seen = first.get(lv), {lv}
        while ind in table.latents and ind not in seen:
            seen.add(ind)
            ind = first.get(ind)
        out[lv] = ind if ind in table.observed else None
    return out


def data_arrays(table, stats: SufficientStats) -> dict[str, np.ndarray]:
    """Shared-data values for the compiled model (all on the standardized scale)."""
    if list(stats.variables) != list(table.observed):
        order = [stats.variables.index(v) for v in table.observed]
        stats = SufficientStats(table.observed, stats.exogenous, stats.x, stats.n,
                                stats.means[:, order], stats.covs[:, order][:, :, order])
    if list(stats.exogenous) != list(table.exogenous):
        if sorted(stats.exogenous) != sorted(table.exogenous):
            raise SEMModelError(f"statistics have exogenous {stats.exogenous}, model has "
                                f"{table.exogenous}")
        order = [stats.exogenous.index(v) for v in table.exogenous]
        stats = SufficientStats(stats.variables, table.exogenous, stats.x[:, order], stats.n,
                                stats.means, stats.covs)
    c, total, W = stats.pooled()
    k = np.sqrt(np.diag(total))
    if np.any(~(k > 0)):
        bad = [v for v, s in zip(table.observed, k) if not s > 0]
        from counterfeed.errors import DataError
        raise DataError(f"observed variable(s) {', '.join(bad)} have zero variance")
    scales = latent_scales(table)
    idx = {v: i for i, v in enumerate(table.observed)}
    k_lat = np.array([k[idx[scales[lv]]] if scales[lv] else 1.0 for lv in table.latents])
    Ws = W / np.outer(k, k)
    try:
        cholW = np.linalg.cholesky(Ws)
    except np.linalg.LinAlgError:
        from counterfeed.errors import DataError
        raise DataError(singular_message(list(table.observed), Ws, int(stats.n.sum()))) from None
    k_all = np.concatenate([k, k_lat])
    out = {
        "k_all": k_all,
        "c_obs": c,
        "xg": stats.x.astype(float),
        "ng": stats.n.astype(float),
        "mg": (stats.means - c) / k,
        "cholW": cholW,
        "n_total": np.array(stats.n.sum(), dtype=float),
    }
    fixed = fixed_covariances(table)
    if fixed:
        pos = {v: i for i, v in enumerate(table.observed + table.latents)}
        out["fixed_cov"] = np.array([r.value / (k_all[pos[r.lhs]] * k_all[pos[r.rhs]])
                                     for r in fixed])
    return out


def singular_message(names: list[str], W: np.ndarray, n: int) -> str:
    """Why the within-group covariance ``W`` of the observed ``names`` is singular: the columns of the
    exact linear dependence (the eigenvector of the smallest eigenvalue, entries above 1e-6 of its
    largest), or too few rows, with what to do."""
    head = "the within-group covariance matrix of the observed variables is singular"
    try:
        vals, vecs = np.linalg.eigh((W + W.T) / 2)
        v = vecs[:, 0]
        cols = [names[i] for i in np.flatnonzero(np.abs(v) > 1e-6 * np.abs(v).max())]
    except Exception:  # noqa: BLE001 (a non-finite matrix: name nothing rather than fail here)
        cols = []
    if len(cols) >= 2:
        return (f"{head}: the columns {', '.join(cols)} are collinear (one is an exact linear combination "
                f"of the others within each arm, e.g. impressions = slate_size x sessions); keep only one "
                f"of them in the model")
    return f"{head} (collinear columns or too few rows: {n} rows for {len(names)} observed variables)"


def fixed_covariances(table) -> list:
    """Covariance rows fixed to a nonzero value (a fixed zero is the structural default)."""
    return [r for r in table.param_rows() if r.kind == "covariance" and not r.free
            and r.value != 0]


def scale_exponents(table, rows) -> np.ndarray:
    """E with original = standardized * exp(E[t] @ log k) for each row t (k: the SDs and latent
    scales in observed + latent order): a loading j -> i divides by k_i / k_j, and so on."""
    names = table.observed + table.latents
    idx = {v: i for i, v in enumerate(names)}
    E = np.zeros((len(rows), len(names)))
    for t, r in enumerate(rows):
        i = idx.get(r.lhs)
        if r.kind == "loading":
            E[t, idx[r.rhs]] += 1
            E[t, i] -= 1
        elif r.kind == "regression":
            E[t, i] += 1
            E[t, idx[r.rhs]] -= 1
        elif r.kind == "exog":
            E[t, i] += 1
        elif r.kind in ("variance", "covariance"):
            E[t, i] += 1
            E[t, idx[r.rhs]] += 1
    return E


def _groups(table):
    """Free parameters grouped for sampling: (family, [(id, prior, kind, row)])."""
    overrides = getattr(table, "prior_overrides", {})
    first_rows = {}
    for r in table.free_rows():
        first_rows.setdefault(r.id, r)
    groups: dict[str, list] = {}
    for pid, r in first_rows.items():
        prior = overrides.get(pid) or parse_prior(r.prior)
        units = "orig" if pid in overrides and r.kind not in ("intercept", "covariance") else "std"
        groups.setdefault(prior.family + ("_cov" if r.kind == "covariance" else ""), []).append(
            (pid, prior, units, r))
    return groups


def initial_values(table) -> dict[str, np.ndarray]:
    """Start values (no jitter) per sampled vector, on the standardized scale."""
    out = {}
    for fam, members in _groups(table).items():
        if fam.startswith("uniform"):
            continue
        if fam.endswith("_cov"):
            out[f"cpc_{fam}"] = np.full(len(members), 0.5)
        else:
            out[f"z_{fam}"] = np.array([r.start for _, _, _, r in members])
    return out


def build_pymc_model(table, data: dict[str, np.ndarray]):
    """Build the PyMC model for ``table`` with shared data ``data`` (see :func:`data_arrays`)."""
    with np.errstate(under="ignore"), warnings.catch_warnings():
        # importing pymc computes np.nextafter(0, 1) in float16 (a benign underflow) and may announce
        # its own deprecations: neither concerns this model
        warnings.simplefilter("ignore", FutureWarning)
        import pymc as pm
    import pytensor.tensor as pt
    from pytensor.tensor.slinalg import solve_triangular

    names = table.observed + table.latents
    idx = {v: i for i, v in enumerate(names)}
    xi = {x: j for j, x in enumerate(table.exogenous)}
    m, p, q = len(names), len(table.observed), len(table.exogenous)
    rows = table.param_rows()
    free_rows = [r for r in rows if r.free]
    coords = {"param": [r.key for r in free_rows]}
    if table.definitions:
        coords["quantity"] = [d.name for d in table.definitions]
    with pm.Model(coords=coords) as model:
        k = pm.Data("k_all", data["k_all"])
        c = pm.Data("c_obs", data["c_obs"])
        xg = pm.Data("xg", data["xg"])
        ng = pm.Data("ng", data["ng"])
        mg = pm.Data("mg", data["mg"])
        cholW = pm.Data("cholW", data["cholW"])
        n_total = pm.Data("n_total", data["n_total"])
        logk = pt.log(k)

        def f_of(rs):
            """original = standardized * f, f = exp(E @ log k) with a constant exponent matrix E."""
            return pt.exp(pt.dot(scale_exponents(table, rs), logk))

        first_of = {}
        for r in free_rows:
            first_of.setdefault(r.id, r)
        # sampled vectors: zall (non-covariance ids) and rall (correlations), concatenated
        zparts, rparts, zpos, rpos, r_scalar = [], [], {}, {}, {}
        for fam, members in _groups(table).items():
            is_cov = fam.endswith("_cov")
            family = fam.removesuffix("_cov")
            if is_cov:  # prior on r in (-1, 1), sampled as u = (r + 1) / 2 in (0, 1)
                args = [pr.args if family == "beta" else tuple((v + 1) / 2 for v in pr.args)
                        for _, pr, _, _ in members]
                cols = [np.array([a[j] for a in args]) for j in range(len(args[0]))]
            elif all(units == "std" for _, _, units, _ in members):
                cols = [np.array([pr.args[j] for _, pr, _, _ in members])
                        for j in range(len(members[0][1].args))]
            else:
                fs = f_of([r for _, _, _, r in members])
                cols = []
                for j in range(len(members[0][1].args)):
                    vals = []
                    for t, (_, pr, units, r) in enumerate(members):
                        vals.append(pr.scaled(fs[t])[1][j] if units == "orig"
                                    else pt.as_tensor_variable(pr.args[j]))
                    cols.append(pt.stack(vals))
            name = f"cpc_{fam}" if is_cov else f"z_{fam}"
            dist = {"normal": pm.Normal, "halfnormal": pm.HalfNormal, "lognormal": pm.LogNormal,
                    "exponential": pm.Exponential, "uniform": pm.Uniform,
                    "beta": pm.Beta}[family]
            rv = dist(name, *cols, shape=len(members))
            target, posd = (rparts, rpos) if is_cov else (zparts, zpos)
            base = sum(len(mm[1]) for mm in target)
            for j, (pid, _, _, _) in enumerate(members):
                posd[pid] = base + j
                if is_cov:
                    r_scalar[pid] = 2 * rv[j] - 1
            target.append((rv, members))
        zall = pt.concatenate([rv for rv, _ in zparts]) if zparts else pt.zeros(0)
        nz = len(zpos)

        # loadings, regressions, exogenous effects, variances (dense constant maps)
        core = [r for r in rows if r.kind in ("loading", "regression", "exog", "variance")]
        S = np.zeros((len(core), nz))
        fixed = np.zeros(len(core))
        for j, r in enumerate(core):
            if r.free:
                S[j, zpos[r.id]] = 1.0
            else:
                fixed[j] = r.value
        f_row = f_of(core)
        f_first = f_of([first_of[r.id] if r.free else r for r in core])
        core_orig = pt.dot(S, zall) * f_first + fixed
        core_std = core_orig / f_row
        pos = {r.key: j for j, r in enumerate(core)}
        MA = np.zeros((m * m, len(core)))
        MB = np.zeros((m * max(q, 1), len(core)))
        MV = np.zeros((m, len(core)))
        for j, r in enumerate(core):
            if r.kind == "loading":
                MA[idx[r.rhs] * m + idx[r.lhs], j] = 1
            elif r.kind == "regression":
                MA[idx[r.lhs] * m + idx[r.rhs], j] = 1
            elif r.kind == "exog":
                MB[idx[r.lhs] * q + xi[r.rhs], j] = 1
            else:
                MV[idx[r.lhs], j] = 1
        A = pt.dot(MA, core_std).reshape((m, m))
        B = pt.dot(MB, core_std)[: m * q].reshape((m, q))
        var_std = pt.dot(MV, core_std)

        # covariances: correlations (pairwise, or from canonical partial correlations in blocks).
        # Fixed covariances never enter the graph as symbolic arithmetic on constants: a fixed
        # zero is a structural zero (left out), another fixed value arrives as standardized data
        # ("fixed_cov"). A symbolic 0 / (k_i k_j) sends PyTensor's canonicalize rewrites into an
        # endless local_zero_div / constant_folding cycle (issue 14, item 7).
        covs = [r for r in rows if r.kind == "covariance" and r.free]
        fixed_covs = fixed_covariances(table)
        Psi = pt.diag(var_std)
        cov_orig = {}
        if fixed_covs:
            fixed_cov = pm.Data("fixed_cov", data["fixed_cov"])
            MF = np.zeros((m * m, len(fixed_covs)))
            for j, r in enumerate(fixed_covs):
                MF[idx[r.lhs] * m + idx[r.rhs], j] = MF[idx[r.rhs] * m + idx[r.lhs], j] = 1
            Psi = Psi + pt.dot(MF, fixed_cov).reshape((m, m))
        if covs:
            blocks = [b for b in _cov_blocks(covs) if len(b["vars"]) >= 3 and b["complete"]]
            rho = {r.id: r_scalar[r.id] for r in covs}
            for b in blocks:
                corr = _cpc_corr(b, {r.id: r_scalar[r.id] for r in b["rows"]}, pt)
                for r in b["rows"]:
                    rho[r.id] = corr.get((r.lhs, r.rhs), corr.get((r.rhs, r.lhs)))
            cov_list, orig_list = [], []
            for r in covs:
                i, j = idx[r.lhs], idx[r.rhs]
                cv = rho[r.id] * pt.sqrt(var_std[i] * var_std[j])
                cov_list.append(cv)
                orig_list.append(cv * k[i] * k[j])
            nc = len(covs)
            MP = np.zeros((m * m, nc))
            for j, r in enumerate(covs):
                MP[idx[r.lhs] * m + idx[r.rhs], j] = MP[idx[r.rhs] * m + idx[r.lhs], j] = 1
            Psi = Psi + pt.dot(MP, pt.stack(cov_list)).reshape((m, m))
            c_orig = pt.stack(orig_list)
            for j, r in enumerate(covs):
                cov_orig[r.key] = (c_orig, j)
        A_orig = A * k[:, None] / k[None, :]
        ints = [r for r in rows if r.kind == "intercept"]
        SI = np.zeros((p, nz))
        for r in ints:
            if r.free:
                SI[idx[r.lhs], zpos[r.id]] = 1
        a_std = pt.dot(SI, zall)
        fixed_ints = [r for r in ints if not r.free]
        if fixed_ints:  # alpha (original units) = k a* + c - A[:p,:p] c, solved for a*
            mask, val = np.zeros(p), np.zeros(p)
            for r in fixed_ints:
                mask[idx[r.lhs]], val[idx[r.lhs]] = 1.0, r.value
            a_std = a_std + mask * (val - c + A_orig[:p, :p] @ c) / k[:p]
        alpha = pt.concatenate([a_std, pt.zeros(m - p)])

        # implied moments on the standardized scale and the sufficient-statistic log-likelihood
        Binv = pt.linalg.inv(pt.eye(m) - A)
        Sigma = (Binv @ Psi @ Binv.T)[:p, :p]
        mu = ((alpha[None, :] + xg @ B.T) @ Binv.T)[:, :p]
        L = pt.linalg.cholesky(Sigma)
        logdet = 2 * pt.sum(pt.log(pt.diag(L)))
        T1 = solve_triangular(L, cholW, lower=True)
        D = (mg - mu) * pt.sqrt(ng)[:, None]
        T2 = solve_triangular(L, D.T, lower=True)
        loglik = -0.5 * (n_total * logdet + pt.sum(T1 ** 2) + pt.sum(T2 ** 2))
        pm.Potential("loglik", loglik)

        # parameters in original units: alpha = k a* + c - A[:p,:p] c
        alpha_orig = k[:p] * a_std + c - A_orig[:p, :p] @ c
        parts = []
        for r in free_rows:
            if r.kind == "intercept":
                parts.append(("a", idx[r.lhs]))
            elif r.kind == "covariance":
                parts.append(("c", cov_orig[r.key][1]))
            else:
                parts.append(("k", pos[r.key]))
        pieces = [core_orig]
        if covs:
            pieces.append(cov_orig[covs[0].key][0])
        pieces.append(alpha_orig)
        allv = pt.concatenate(pieces)
        off = {"k": 0, "c": len(core), "a": len(core) + len(covs)}
        sel = np.zeros((len(parts), len(core) + len(covs) + p))
        for t, (kind, j) in enumerate(parts):
            sel[t, off[kind] + j] = 1
        params = pm.Deterministic("params", pt.dot(sel, allv), dims="param")
        if table.definitions:
            env = {}
            free_pos = {r.key: j for j, r in enumerate(free_rows)}
            for r in rows:
                if r.label and r.label not in env:
                    env[r.label] = params[free_pos[r.key]] if r.free else r.value
            vals = []
            for d in table.definitions:
                env[d.name] = pt.as_tensor_variable(eval_expr(d.expr, env))
                vals.append(env[d.name])
            pm.Deterministic("defined", pt.stack(vals), dims="quantity")
    return model


def _cov_blocks(free_cov):
    """Connected components of the free-covariance graph; 'complete' when every pair is free."""
    adj: dict[str, set] = {}
    for r in free_cov:
        adj.setdefault(r.lhs, set()).add(r.rhs)
        adj.setdefault(r.rhs, set()).add(r.lhs)
    seen, blocks = set(), []
    for v in adj:
        if v in seen:
            continue
        comp, stack = [], [v]
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            comp.append(u)
            stack.extend(adj[u] - seen)
        comp_set = set(comp)
        rows = [r for r in free_cov if r.lhs in comp_set]
        d = len(comp)
        blocks.append({"vars": [x for x in adj if x in comp_set], "rows": rows,
                       "complete": len(rows) == d * (d - 1) // 2})
    return blocks


def _cpc_corr(block, cpc, pt):
    """Correlations from canonical partial correlations (the LKJ/onion Cholesky construction)."""
    vs = block["vars"]
    d = len(vs)
    pos = {v: i for i, v in enumerate(vs)}
    zc = {}
    for r in block["rows"]:
        i, j = pos[r.lhs], pos[r.rhs]
        zc[(max(i, j), min(i, j))] = cpc[r.id]
    L = [[None] * d for _ in range(d)]
    L[0][0] = pt.as_tensor_variable(1.0)
    for i in range(1, d):
        rem = pt.as_tensor_variable(1.0)
        for j in range(i):
            L[i][j] = zc[(i, j)] * pt.sqrt(rem)
            rem = rem - L[i][j] ** 2
        L[i][i] = pt.sqrt(rem)
    corr = {}
    for i in range(d):
        for j in range(i):
            corr[(vs[i], vs[j])] = sum(L[i][t] * L[j][t] for t in range(j + 1))
    return corr
