"""One generic Gaussian-SEM log density and gradient in numba, compiled once per installation.

The model's structure is not code here but data: :func:`counterfeed.sem.numba_model.pack` writes
it, with the data's sufficient statistics, into one float64 array ``spec`` (layout below), and
nutpie hands a pointer to that array to the C callbacks :data:`logp_cfunc` and
:data:`expand_cfunc` as ``user_data``. The callbacks are module-level, have no closures or dynamic
globals, and are compiled with ``cache=True``, so a fresh process loads machine code from the cache
instead of compiling (issue 14 item 10). The density is exactly the PyMC model's of
:func:`counterfeed.sem.model.build_pymc_model` (same priors, transforms and Jacobians; tests compare
both to 1e-8). The gradient is reverse mode by hand: with Sigma = (B^-1 Psi B^-T)[:p,:p], B = I - A,

    l = -1/2 (N log|Sigma| + tr(Sigma^-1 K)),  K = W + sum_g n_g d_g d_g',  d_g = m_g - mu_g,
    dl/dSigma = -1/2 (N Sigma^-1 - Sigma^-1 K Sigma^-1) =: G,   dl/dmu_g = n_g Sigma^-1 d_g =: h_g,
    dl/dPsi = B^-T G B^-1,  dl/dA = 2 B^-T G S + sum_g B^-T h_g mu_g',  dl/dnu_g = B^-T h_g

(matrix calculus as in Magnus & Neudecker, *Matrix Differential Calculus*, ch. 8; G and h_g padded
with zeros to the m latent + observed rows). Correlation blocks use the onion / LKJ Cholesky
construction from canonical partial correlations (Lewandowski, Kurowicka & Joe 2009), reversed
step by step.

``spec`` layout: ``spec[0]`` length, ``spec[1..11]`` sizes (see ``H_*``), ``spec[16 + s]`` the
offset of section ``s`` (``S_*``); sections are row-major tables of float64 (indices as floats).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from counterfeed.sem._numba_linalg import (begin_cached_definitions, chol_inverse,
                                           end_cached_definitions, inverse, sigmoid, softplus)

# header slots
H_LEN, H_NTH, H_M, H_P, H_Q, H_G, H_NCORE, H_NCOV, H_NBLK, H_NPAR, H_NTOT, H_NFIXCOV = range(12)
# sections: priors (nth x 6), core rows (ncore x 6), covariance rows (ncov x 6), blocks
# (nblk x 2: d, offset), block index matrices, intercepts (p x 3), fixed covariances (nfixcov x 3),
# k (m), c (p), xg (G x q), ng (G), mg (G x p), W (p x p), params (npar x 3)
(S_PRIOR, S_CORE, S_COV, S_BLK, S_BLKIDX, S_INT, S_FIXCOV, S_K, S_C, S_XG, S_NG, S_MG, S_W,
 S_PAR) = range(14)
N_SECTIONS = 14
HEADER = 16 + N_SECTIONS
# transforms and prior families
T_NONE, T_LOG, T_INTERVAL, T_LOGODDS = range(4)
F_NORMAL, F_HALFNORMAL, F_LOGNORMAL, F_EXPONENTIAL, F_UNIFORM, F_BETA = range(6)
# core row targets; params kinds
C_A, C_B, C_V = range(3)
P_CORE, P_COV, P_INT = range(3)

_SAVED = begin_cached_definitions()


@numba.njit(cache=True)
def _sec(spec, s):
    return int(spec[16 + s])


@numba.njit(cache=True)
def _constrain(x, spec, theta, dtheta):
    """theta = transform(x); returns the log-Jacobian; dtheta = dtheta/dx; dtheta/dx of logJ in
    the caller via ``_jac_grad``."""
    nth = int(spec[H_NTH])
    o = _sec(spec, S_PRIOR)
    logj = 0.0
    for t in range(nth):
        tr, a, b = int(spec[o + 6 * t]), spec[o + 6 * t + 2], spec[o + 6 * t + 3]
        y = x[t]
        if tr == T_NONE:
            theta[t], dtheta[t] = y, 1.0
        elif tr == T_LOG:
            theta[t] = math.exp(y)
            dtheta[t] = theta[t]
            logj += y
        else:
            s = sigmoid(y)
            lo, hi = (a, b) if tr == T_INTERVAL else (0.0, 1.0)
            theta[t] = lo + (hi - lo) * s
            dtheta[t] = (hi - lo) * s * (1.0 - s)
            logj += math.log(hi - lo) - softplus(-y) - softplus(y)
    return logj


@numba.njit(cache=True)
def _prior(x, theta, spec, g):
    """Sum of the priors' log densities at theta; adds d/dtheta to g."""
    nth = int(spec[H_NTH])
    o = _sec(spec, S_PRIOR)
    lp = 0.0
    for t in range(nth):
        fam = int(spec[o + 6 * t + 1])
        a, b, const = spec[o + 6 * t + 2], spec[o + 6 * t + 3], spec[o + 6 * t + 4]
        v = theta[t]
        if fam == F_NORMAL:
            z = (v - a) / b
            lp += const - 0.5 * z * z
            g[t] += -z / b
        elif fam == F_HALFNORMAL:
            z = v / a
            lp += const - 0.5 * z * z
            g[t] += -z / a
        elif fam == F_LOGNORMAL:
            lv = x[t]  # log transform: log(theta) is x exactly
            z = (lv - a) / b
            lp += const - 0.5 * z * z - lv
            g[t] += (-z / b - 1.0) / v
        elif fam == F_EXPONENTIAL:
            lp += const - a * v
            g[t] += -a
        elif fam == F_UNIFORM:
            lp += const
        else:  # beta on the logodds scale: log theta = -softplus(-x), log(1-theta) = -softplus(x)
            lp += const - (a - 1.0) * softplus(-x[t]) - (b - 1.0) * softplus(x[t])
            g[t] += (a - 1.0) / v - (b - 1.0) / (1.0 - v)
    return lp


@numba.njit(cache=True)
def _jac_grad(x, spec, gx):
    """Adds d logJ / dx to gx."""
    nth = int(spec[H_NTH])
    o = _sec(spec, S_PRIOR)
    for t in range(nth):
        tr = int(spec[o + 6 * t])
        if tr == T_LOG:
            gx[t] += 1.0
        elif tr != T_NONE:
            gx[t] += 1.0 - 2.0 * sigmoid(x[t])


@numba.njit(cache=True)
def _cpc_forward(spec, theta, b, L, rem):
    """Onion construction of block b: fills L (d x d) and rem (d x d, rem[i, j] before step j)."""
    ob, oi = _sec(spec, S_BLK), _sec(spec, S_BLKIDX)
    d, off = int(spec[ob + 2 * b]), int(spec[ob + 2 * b + 1])
    L[:d, :d] = 0.0
    L[0, 0] = 1.0
    for i in range(1, d):
        r = 1.0
        for j in range(i):
            rem[i, j] = r
            z = 2.0 * theta[int(spec[oi + off + i * d + j])] - 1.0
            L[i, j] = z * math.sqrt(r)
            r = r - L[i, j] * L[i, j]
        rem[i, i] = r
        L[i, i] = math.sqrt(r)
    return d


@numba.njit(cache=True)
def _rho(spec, theta, L, rem, rho):
    """Correlation of every free covariance row."""
    ncov, oc, nblk = int(spec[H_NCOV]), _sec(spec, S_COV), int(spec[H_NBLK])
    for t in range(ncov):
        if int(spec[oc + 6 * t + 3]) < 0:
            rho[t] = 2.0 * theta[int(spec[oc + 6 * t + 2])] - 1.0
    for b in range(nblk):
        _cpc_forward(spec, theta, b, L, rem)
        for t in range(ncov):
            if int(spec[oc + 6 * t + 3]) == b:
                i, j = int(spec[oc + 6 * t + 4]), int(spec[oc + 6 * t + 5])
                s = 0.0
                for u in range(j + 1):
                    s += L[i, u] * L[j, u]
                rho[t] = s


@numba.njit(cache=True)
def _structure(spec, theta, A, B, V, Psi, alpha, rho, L, rem):
    """A (m x m), B (m x q), variances V, Psi (m x m) and intercepts alpha on the standardized
    scale."""
    m, p = int(spec[H_M]), int(spec[H_P])
    A[:, :] = 0.0
    B[:, :] = 0.0
    V[:] = 0.0
    oc = _sec(spec, S_CORE)
    for t in range(int(spec[H_NCORE])):
        tgt, i, j, zi = (int(spec[oc + 6 * t]), int(spec[oc + 6 * t + 1]),
                         int(spec[oc + 6 * t + 2]), int(spec[oc + 6 * t + 3]))
        val = spec[oc + 6 * t + 5]
        if zi >= 0:
            val += theta[zi] * spec[oc + 6 * t + 4]
        if tgt == C_A:
            A[i, j] += val
        elif tgt == C_B:
            B[i, j] += val
        else:
            V[i] += val
    Psi[:, :] = 0.0
    for i in range(m):
        Psi[i, i] = V[i]
    of = _sec(spec, S_FIXCOV)
    for t in range(int(spec[H_NFIXCOV])):
        i, j = int(spec[of + 3 * t]), int(spec[of + 3 * t + 1])
        Psi[i, j] += spec[of + 3 * t + 2]
        Psi[j, i] += spec[of + 3 * t + 2]
    _rho(spec, theta, L, rem, rho)
    ov = _sec(spec, S_COV)
    for t in range(int(spec[H_NCOV])):
        i, j = int(spec[ov + 6 * t]), int(spec[ov + 6 * t + 1])
        cv = rho[t] * math.sqrt(V[i] * V[j])
        Psi[i, j] += cv
        Psi[j, i] += cv
    oi, ok, occ = _sec(spec, S_INT), _sec(spec, S_K), _sec(spec, S_C)
    alpha[:] = 0.0
    for i in range(p):
        zi = int(spec[oi + 3 * i])
        if zi >= 0:
            alpha[i] += theta[zi]
        if spec[oi + 3 * i + 1] > 0:  # fixed: a* = (value - c)/k + sum_j A[i, j] c_j / k_j
            alpha[i] += spec[oi + 3 * i + 2]
            for j in range(p):
                alpha[i] += A[i, j] * spec[occ + j] / spec[ok + j]


@numba.njit(cache=True)
def logp_grad(x, spec, gx):
    """Log density at the unconstrained point x; writes its gradient to gx. NaN outside the
    support (a non-positive-definite implied covariance)."""
    nth, m, p = int(spec[H_NTH]), int(spec[H_M]), int(spec[H_P])
    q, G, N = int(spec[H_Q]), int(spec[H_G]), spec[H_NTOT]
    theta, dtheta, gth = np.empty(nth), np.empty(nth), np.zeros(nth)
    logj = _constrain(x, spec, theta, dtheta)
    lp = logj + _prior(x, theta, spec, gth)
    A, B, V, Psi = np.empty((m, m)), np.empty((m, max(q, 1))), np.empty(m), np.empty((m, m))
    alpha, ncov = np.empty(m), int(spec[H_NCOV])
    rho = np.empty(max(ncov, 1))
    L, rem = np.zeros((m, m)), np.zeros((m, m))
    _structure(spec, theta, A, B, V, Psi, alpha, rho, L, rem)
    Binv = np.empty((m, m))
    if not inverse(np.eye(m) - A, Binv):
        return math.nan
    S = Binv @ Psi @ Binv.T
    Sig = S[:p, :p].copy()
    Si = np.empty((p, p))
    logdet = chol_inverse(Sig, Si)
    if math.isnan(logdet):
        return math.nan
    oxg, ong, omg, ow = _sec(spec, S_XG), _sec(spec, S_NG), _sec(spec, S_MG), _sec(spec, S_W)
    K = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            K[i, j] = spec[ow + i * p + j]
    gA = np.zeros((m, m))
    gB = np.zeros((m, max(q, 1)))
    galpha = np.zeros(m)
    nu, hf = np.empty(m), np.zeros(m)
    for g in range(G):
        ng = spec[ong + g]
        for i in range(m):
            nu[i] = alpha[i]
            for j in range(q):
                nu[i] += B[i, j] * spec[oxg + g * q + j]
        mu = Binv @ nu
        d = np.empty(p)
        for i in range(p):
            d[i] = spec[omg + g * p + i] - mu[i]
        for i in range(p):
            for j in range(p):
                K[i, j] += ng * d[i] * d[j]
        h = ng * (Si @ d)
        hf[:p] = h
        bh = Binv.T @ hf
        for i in range(m):
            galpha[i] += bh[i]
            for j in range(m):
                gA[i, j] += bh[i] * mu[j]
            for j in range(q):
                gB[i, j] += bh[i] * spec[oxg + g * q + j]
    SiK = Si @ K
    tr = 0.0
    for i in range(p):
        tr += SiK[i, i]
    lp += -0.5 * (N * logdet + tr)
    Gf = np.zeros((m, m))
    Gf[:p, :p] = -0.5 * (N * Si - SiK @ Si)
    gPsi = Binv.T @ Gf @ Binv
    gA += 2.0 * (Binv.T @ Gf @ S)
    # intercepts fixed in original units depend on A
    oi, ok, occ = _sec(spec, S_INT), _sec(spec, S_K), _sec(spec, S_C)
    for i in range(p):
        if spec[oi + 3 * i + 1] > 0:
            for j in range(p):
                gA[i, j] += galpha[i] * spec[occ + j] / spec[ok + j]
    # covariances: Psi_ij = rho sqrt(V_i V_j)
    gV = np.zeros(m)
    for i in range(m):
        gV[i] = gPsi[i, i]
    grho = np.zeros(max(ncov, 1))
    ov = _sec(spec, S_COV)
    for t in range(ncov):
        i, j = int(spec[ov + 6 * t]), int(spec[ov + 6 * t + 1])
        gij = gPsi[i, j] + gPsi[j, i]
        s = math.sqrt(V[i] * V[j])
        grho[t] = gij * s
        if s > 0:
            gV[i] += gij * rho[t] * 0.5 * s / V[i]
            gV[j] += gij * rho[t] * 0.5 * s / V[j]
    _rho_grad(spec, theta, grho, gth, L, rem)
    oc = _sec(spec, S_CORE)
    for t in range(int(spec[H_NCORE])):
        zi = int(spec[oc + 6 * t + 3])
        if zi < 0:
            continue
        tgt, i, j = int(spec[oc + 6 * t]), int(spec[oc + 6 * t + 1]), int(spec[oc + 6 * t + 2])
        gv = gA[i, j] if tgt == C_A else (gB[i, j] if tgt == C_B else gV[i])
        gth[zi] += gv * spec[oc + 6 * t + 4]
    for i in range(p):
        zi = int(spec[oi + 3 * i])
        if zi >= 0:
            gth[zi] += galpha[i]
    for t in range(nth):
        gx[t] = gth[t] * dtheta[t]
    _jac_grad(x, spec, gx)
    return lp


@numba.njit(cache=True)
def _rho_grad(spec, theta, grho, gth, L, rem):
    """Adds d/dtheta of sum_t grho[t] * rho[t] to gth (direct rows and onion blocks)."""
    ncov, oc, nblk = int(spec[H_NCOV]), _sec(spec, S_COV), int(spec[H_NBLK])
    ob, oi = _sec(spec, S_BLK), _sec(spec, S_BLKIDX)
    for t in range(ncov):
        if int(spec[oc + 6 * t + 3]) < 0:
            gth[int(spec[oc + 6 * t + 2])] += 2.0 * grho[t]
    for b in range(nblk):
        d = _cpc_forward(spec, theta, b, L, rem)
        off = int(spec[ob + 2 * b + 1])
        gL = np.zeros((d, d))
        for t in range(ncov):
            if int(spec[oc + 6 * t + 3]) == b:
                i, j = int(spec[oc + 6 * t + 4]), int(spec[oc + 6 * t + 5])
                for u in range(j + 1):
                    gL[i, u] += grho[t] * L[j, u]
                    gL[j, u] += grho[t] * L[i, u]
        for i in range(1, d):
            grem = gL[i, i] * 0.5 / L[i, i] if L[i, i] > 0 else 0.0
            for j in range(i - 1, -1, -1):
                gl = gL[i, j] - 2.0 * L[i, j] * grem
                sq = math.sqrt(rem[i, j])
                z = 2.0 * theta[int(spec[oi + off + i * d + j])] - 1.0
                gth[int(spec[oi + off + i * d + j])] += 2.0 * gl * sq
                if sq > 0:
                    grem = grem + gl * z * 0.5 / sq


@numba.njit(cache=True)
def params_of(x, spec, out):
    """The free parameters in original units at the unconstrained point x."""
    nth, m, p, q = int(spec[H_NTH]), int(spec[H_M]), int(spec[H_P]), int(spec[H_Q])
    theta, dtheta = np.empty(nth), np.empty(nth)
    _constrain(x, spec, theta, dtheta)
    A, B, V, Psi = np.empty((m, m)), np.empty((m, max(q, 1))), np.empty(m), np.empty((m, m))
    alpha, ncov = np.empty(m), int(spec[H_NCOV])
    rho = np.empty(max(ncov, 1))
    L, rem = np.zeros((m, m)), np.zeros((m, m))
    _structure(spec, theta, A, B, V, Psi, alpha, rho, L, rem)
    op, ok, occ, ov = _sec(spec, S_PAR), _sec(spec, S_K), _sec(spec, S_C), _sec(spec, S_COV)
    for t in range(int(spec[H_NPAR])):
        kind, a, b = int(spec[op + 3 * t]), int(spec[op + 3 * t + 1]), spec[op + 3 * t + 2]
        if kind == P_CORE:
            out[t] = theta[a] * b
        elif kind == P_COV:
            i, j = int(spec[ov + 6 * a]), int(spec[ov + 6 * a + 1])
            out[t] = rho[a] * math.sqrt(V[i] * V[j]) * spec[ok + i] * spec[ok + j]
        else:  # intercept: alpha = k a* + c - sum_j A[i, j] k_i / k_j c_j
            v = spec[ok + a] * alpha[a] + spec[occ + a]
            for j in range(p):
                v -= A[a, j] * spec[ok + a] / spec[ok + j] * spec[occ + j]
            out[t] = v


_LOGP_SIG = numba.types.int64(numba.types.uint64, numba.types.CPointer(numba.types.double),
                              numba.types.CPointer(numba.types.double),
                              numba.types.CPointer(numba.types.double), numba.types.voidptr)
_EXPAND_SIG = numba.types.int64(numba.types.uint64, numba.types.uint64,
                                numba.types.CPointer(numba.types.double),
                                numba.types.CPointer(numba.types.double), numba.types.voidptr)


@numba.cfunc(_LOGP_SIG, cache=True)
def logp_cfunc(dim, x_, out_, logp_, user_data_):
    """nutpie's logp callback (signature of nutpie.compile_pymc._make_c_logp_func)."""
    n = int(numba.carray(user_data_, (1,), np.float64)[0])
    spec = numba.carray(user_data_, (n,), np.float64)
    if dim != int(spec[H_NTH]):
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    val = logp_grad(x, spec, out)
    logp[0] = val
    for i in range(dim):
        if not math.isfinite(out[i]):
            return 3
    if not math.isfinite(val):
        return 4
    return 0


@numba.cfunc(_EXPAND_SIG, cache=True)
def expand_cfunc(dim, expanded, x_, out_, user_data_):
    """nutpie's expand callback: the draw's parameters in original units."""
    n = int(numba.carray(user_data_, (1,), np.float64)[0])
    spec = numba.carray(user_data_, (n,), np.float64)
    if dim != int(spec[H_NTH]) or expanded != int(spec[H_NPAR]):
        return -1
    params_of(numba.carray(x_, (dim,)), spec, numba.carray(out_, (expanded,)))
    return 0


end_cached_definitions(_SAVED)


def cache_hit() -> bool:
    """True when both callbacks were loaded from the cache in this process (nothing compiled)."""
    return logp_cfunc.cache_hits > 0 and expand_cfunc.cache_hits > 0
