//! Empirical semivariograms and spherical variogram fits, for `split.buffer: auto`: the buffer
//! is the range over which the target stays spatially autocorrelated, as blockCV's
//! `cv_spatial_autocor` sets its block size (Valavi et al. 2019).
//!
//! The empirical variogram follows scikit-gstat's defaults (`bin_func='even'`,
//! `estimator='matheron'`), so that scripts/variogram_reference.py pins it to 1e-9: `n_lags`
//! equal-width lag classes from 0 to `maxlag`, each named by its upper edge; class k holds the
//! pairs with `edge[k-1] ≤ d < edge[k]` (numpy's `digitize`), so pairs at `maxlag` or farther are
//! left out; γ = 1/(2N) Σ (z_i − z_j)² over the N pairs of a class (Matheron 1962).
//!
//! The spherical model is fitted by weighted least squares with weights N/h² (h: a class's upper
//! edge, N: its pairs), gstat's default `fit.method = 7`, which blockCV's fit (automap) uses:
//! short lags, which hold the range, weigh most. The bounds are scikit-gstat's: range in
//! (0, the last edge], partial sill in [0, max γ], nugget in [0, 0.99 max γ].

use serde::Serialize;

/// Lag classes of [`fit_default`] (scikit-gstat's default too).
pub const N_LAGS: usize = 10;

/// An empirical semivariogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Empirical {
    /// Upper edges of the lag classes (distance units of the coordinates).
    pub bins: Vec<f64>,
    /// Matheron semivariance of each class; NaN for a class without pairs.
    pub semivariance: Vec<f64>,
    /// Pairs in each class.
    pub counts: Vec<u64>,
}

/// A spherical variogram γ(h) = nugget + sill·(1.5 h/range − 0.5 (h/range)³) for h ≤ range,
/// nugget + sill beyond. `sill` is the partial sill (scikit-gstat's `sill`), the height above
/// the nugget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spherical {
    pub range: f64,
    pub sill: f64,
    pub nugget: f64,
}

impl Spherical {
    pub fn at(&self, h: f64) -> f64 {
        self.nugget + self.sill * shape(h, self.range)
    }
}

/// The spherical shape (0 at h = 0, 1 from `range` on).
fn shape(h: f64, range: f64) -> f64 {
    if h <= range {
        let u = h / range;
        1.5 * u - 0.5 * u.powi(3)
    } else {
        1.0
    }
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (a.0 - b.0, a.1 - b.1);
    (dx * dx + dy * dy).sqrt()
}

/// The largest distance between two of `coords` (0 for fewer than two).
pub fn max_distance(coords: &[(f64, f64)]) -> f64 {
    let mut max = 0.0f64;
    for (i, &a) in coords.iter().enumerate() {
        for &b in &coords[i + 1..] {
            let (dx, dy) = (a.0 - b.0, a.1 - b.1);
            max = max.max(dx * dx + dy * dy);
        }
    }
    max.sqrt()
}

/// The default `maxlag`: half the largest pairwise distance (beyond it a variogram rests on
/// pairs from the city's edges only).
pub fn default_maxlag(coords: &[(f64, f64)]) -> f64 {
    0.5 * max_distance(coords)
}

/// The Matheron semivariogram of `values` at `coords` in `n_lags` equal-width classes from 0 to
/// `maxlag` (at most the largest pairwise distance, as in scikit-gstat).
pub fn empirical(coords: &[(f64, f64)], values: &[f64], n_lags: usize, maxlag: f64) -> Empirical {
    assert_eq!(coords.len(), values.len(), "one value per coordinate");
    let n_lags = n_lags.max(1);
    let maxlag = maxlag.min(max_distance(coords));
    // numpy's linspace(0, maxlag, n_lags + 1)[1:]: k·(maxlag/n), the last exactly maxlag.
    let step = maxlag / n_lags as f64;
    let mut bins: Vec<f64> = (1..=n_lags).map(|k| k as f64 * step).collect();
    bins[n_lags - 1] = maxlag;
    let mut sums = vec![0.0; n_lags];
    let mut counts = vec![0u64; n_lags];
    for (i, (&a, &za)) in coords.iter().zip(values).enumerate() {
        for (&b, &zb) in coords[i + 1..].iter().zip(&values[i + 1..]) {
            let d = distance(a, b);
            let class = bins.partition_point(|&edge| edge <= d);
            if class < n_lags {
                sums[class] += (za - zb) * (za - zb);
                counts[class] += 1;
            }
        }
    }
    let semivariance = sums
        .iter()
        .zip(&counts)
        .map(|(&s, &n)| {
            if n == 0 {
                f64::NAN
            } else {
                (1.0 / (2.0 * n as f64)) * s
            }
        })
        .collect();
    Empirical {
        bins,
        semivariance,
        counts,
    }
}

/// Ranges tried on the first pass of [`fit_spherical`], evenly over (0, last edge].
const RANGE_GRID: usize = 1000;

/// Fits a spherical model to `e` by weighted least squares (weights N/h², the module's bounds).
/// For a given range the model is linear in sill and nugget, so their box-constrained least
/// squares is solved exactly; the range is searched on a grid, then refined by golden section
/// around the best grid point. None when no class holds a pair. A fitted partial sill of 0 (no
/// spatial structure) has range 0.
pub fn fit_spherical(e: &Empirical) -> Option<Spherical> {
    let points: Vec<(f64, f64, f64)> = e
        .bins
        .iter()
        .zip(&e.semivariance)
        .zip(&e.counts)
        .filter(|((h, g), &n)| n > 0 && g.is_finite() && **h > 0.0)
        .map(|((&h, &g), &n)| (h, g, n as f64 / (h * h)))
        .collect();
    let r_max = e.bins.iter().copied().fold(0.0, f64::max);
    if points.is_empty() || r_max <= 0.0 {
        return None;
    }
    let g_max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let (sill_max, nugget_max) = (g_max, 0.99 * g_max);
    let at = |range: f64| -> (f64, Spherical) {
        let s: Vec<f64> = points.iter().map(|&(h, _, _)| shape(h, range)).collect();
        let (loss, sill, nugget) = sill_and_nugget(&points, &s, sill_max, nugget_max);
        (
            loss,
            Spherical {
                range,
                sill,
                nugget,
            },
        )
    };
    let grid: Vec<f64> = (1..=RANGE_GRID)
        .map(|k| r_max * k as f64 / RANGE_GRID as f64)
        .collect();
    let mut best = at(grid[0]);
    let mut best_k = 0;
    for (k, &r) in grid.iter().enumerate().skip(1) {
        let candidate = at(r);
        if candidate.0 < best.0 {
            (best, best_k) = (candidate, k);
        }
    }
    // Golden section between the grid neighbours of the best grid point.
    let (mut lo, mut hi) = (
        if best_k == 0 {
            r_max * 1e-6
        } else {
            grid[best_k - 1]
        },
        grid[(best_k + 1).min(RANGE_GRID - 1)],
    );
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut x1, mut x2) = (hi - ratio * (hi - lo), lo + ratio * (hi - lo));
    let (mut f1, mut f2) = (at(x1), at(x2));
    for _ in 0..100 {
        if f1.0 <= f2.0 {
            hi = x2;
            (x2, f2) = (x1, f1);
            x1 = hi - ratio * (hi - lo);
            f1 = at(x1);
        } else {
            lo = x1;
            (x1, f1) = (x2, f2);
            x2 = lo + ratio * (hi - lo);
            f2 = at(x2);
        }
        if hi - lo <= 1e-12 * r_max {
            break;
        }
    }
    for candidate in [f1, f2, at(lo), at(hi)] {
        if candidate.0 < best.0 {
            best = candidate;
        }
    }
    let mut model = best.1;
    if model.sill == 0.0 {
        model.range = 0.0;
    }
    Some(model)
}

/// Weighted least squares of γ ≈ nugget + sill·s over `points` (h, γ, w), sill in
/// [0, `sill_max`], nugget in [0, `nugget_max`]: (loss, sill, nugget). A convex quadratic on a
/// box: its minimum is the unconstrained one when inside, else on an edge, where the
/// one-dimensional minimum clipped to the edge is exact.
fn sill_and_nugget(
    points: &[(f64, f64, f64)],
    s: &[f64],
    sill_max: f64,
    nugget_max: f64,
) -> (f64, f64, f64) {
    let (mut w, mut ws, mut wss, mut wg, mut wsg) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (&(_, g, wt), &si) in points.iter().zip(s) {
        w += wt;
        ws += wt * si;
        wss += wt * si * si;
        wg += wt * g;
        wsg += wt * si * g;
    }
    let loss = |c: f64, b: f64| -> f64 {
        points
            .iter()
            .zip(s)
            .map(|(&(_, g, wt), &si)| {
                let r = g - b - c * si;
                wt * r * r
            })
            .sum()
    };
    let mut candidates: Vec<(f64, f64)> = Vec::with_capacity(5);
    let det = wss * w - ws * ws;
    if det > 1e-12 * wss * w {
        let c = (w * wsg - ws * wg) / det;
        let b = (wss * wg - ws * wsg) / det;
        if (0.0..=sill_max).contains(&c) && (0.0..=nugget_max).contains(&b) {
            candidates.push((c, b));
        }
    }
    for c in [0.0, sill_max] {
        candidates.push((c, ((wg - c * ws) / w).clamp(0.0, nugget_max)));
    }
    for b in [0.0, nugget_max] {
        let c = if wss > 0.0 {
            ((wsg - b * ws) / wss).clamp(0.0, sill_max)
        } else {
            0.0
        };
        candidates.push((c, b));
    }
    candidates
        .into_iter()
        .map(|(c, b)| (loss(c, b), c, b))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("candidates on every edge")
}

/// A fitted variogram with the settings it was fitted under.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fitted {
    pub maxlag: f64,
    pub empirical: Empirical,
    pub model: Spherical,
}

/// [`empirical`] with [`N_LAGS`] classes up to [`default_maxlag`], and its [`fit_spherical`].
/// None when no two tiles are apart.
pub fn fit_default(coords: &[(f64, f64)], values: &[f64]) -> Option<Fitted> {
    let maxlag = default_maxlag(coords);
    if maxlag <= 0.0 {
        return None;
    }
    let empirical = empirical(coords, values, N_LAGS, maxlag);
    let model = fit_spherical(&empirical)?;
    Some(Fitted {
        maxlag,
        empirical,
        model,
    })
}
