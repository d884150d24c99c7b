"""Fits the two polynomials of `erf_f32` (src/engine/kernels/runtime/simd.rs) and reports the worst error of
the f32 evaluation against the correctly rounded erf. Plain least squares on Chebyshev nodes,
weighted by 1/value (relative error). Needs numpy only.

    python3 scripts/ref/fit_erf.py   # prints the coefficients and the max ulp error
"""
import math

import numpy as np

f32 = np.float32
erf = np.vectorize(math.erf)
erfc = np.vectorize(math.erfc)


def cheb(a, b, n):
    k = np.arange(n)
    return (a + b) / 2 + (b - a) / 2 * np.cos(np.pi * (k + 0.5) / n)


def fit(x, y, deg):
    a = np.vander(x, deg + 1, increasing=True)
    w = 1 / y
    return np.linalg.lstsq(a * w[:, None], y * w, rcond=None)[0].astype(f32)


# |x| < 1: erf(x) / x as a polynomial in x².
xs = cheb(1e-6, 1.0, 4000)
small = fit(xs * xs, erf(xs) / xs, 6)
# 1 ≤ |x| ≤ 4: R(a) = erfc(a)·exp(a²) as a polynomial in (a − 2.5) / 1.5.
xl = cheb(1.0, 4.0, 4000)
large = fit((xl - 2.5) / 1.5, erfc(xl) * np.exp(xl * xl), 10)


def horner(c, x):
    p = f32(0)
    for ci in c[::-1]:
        p = (p * x + ci).astype(f32)
    return p


def erf32(x):
    a = np.minimum(np.abs(x), f32(4))
    t = (a * a).astype(f32)
    s = (x * horner(small, t)).astype(f32)
    r = horner(large, ((a - f32(2.5)) * f32(1 / 1.5)).astype(f32))
    l = np.copysign((f32(1) - np.exp(-t.astype(np.float64)).astype(f32) * r).astype(f32), x)
    return np.where(a < 1, s, l)


x = np.linspace(-6, 6, 2_000_001).astype(f32)
got = erf32(x)
want = erf(x.astype(np.float64)).astype(f32)
ulp = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))
print("small", [float(c) for c in small])
print("large", [float(c) for c in large])
print("max ulp", int(ulp.max()))
