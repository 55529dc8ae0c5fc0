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

/// `split.buffer: {auto: {detrend: …}}`: the trend taken out of ln emission before its
/// variogram. On the real cities ln emission falls from the centre outwards over the whole city,
/// and the variogram of the raw values measures that trend (its range is the lag span), not the
/// size of the patches a buffer must cover; the variogram of the residuals from a polynomial
/// surface in the tile coordinates (universal kriging's drift) measures the latter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detrend {
    /// The values themselves.
    #[default]
    None,
    /// Residuals of an OLS fit on 1, x, y.
    Linear,
    /// Residuals of an OLS fit on 1, x, y, x², xy, y².
    Quadratic,
}

impl Detrend {
    pub fn is_none(&self) -> bool {
        *self == Detrend::None
    }

    pub fn name(&self) -> &'static str {
        match self {
            Detrend::None => "none",
            Detrend::Linear => "linear",
            Detrend::Quadratic => "quadratic",
        }
    }

    /// The trend's terms in the centred coordinates, in the order of [`Trend::coefficients`].
    pub fn terms(&self) -> &'static [&'static str] {
        match self {
            Detrend::None => &[],
            Detrend::Linear => &["1", "x", "y"],
            Detrend::Quadratic => &["1", "x", "y", "x^2", "xy", "y^2"],
        }
    }

    fn row(&self, x: f64, y: f64) -> Vec<f64> {
        match self {
            Detrend::None => vec![],
            Detrend::Linear => vec![1.0, x, y],
            Detrend::Quadratic => vec![1.0, x, y, x * x, x * y, y * y],
        }
    }
}

/// A polynomial trend surface fitted by ordinary least squares, and the residuals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub detrend: Detrend,
    /// The mean of the coordinates: the trend's x and y are measured from it.
    pub origin: (f64, f64),
    /// [`Detrend::terms`].
    pub terms: &'static [&'static str],
    /// One per [`Detrend::terms`].
    pub coefficients: Vec<f64>,
    /// The share of the values' variance the trend explains: 1 − Σr² / Σ(z − z̄)².
    pub r2: f64,
    /// z − trend, one per value.
    #[serde(skip)]
    pub residuals: Vec<f64>,
}

/// The residuals of `values` from an OLS polynomial surface (`detrend`) in `coords`, measured
/// from the coordinates' mean (the centring changes no residual and keeps the quadratic terms
/// well-conditioned), solved by Householder QR. None when there are no more values than terms,
/// or the coordinates cannot determine the surface (all tiles on one line, say). `Detrend::None`
/// gives the values themselves.
pub fn detrend(coords: &[(f64, f64)], values: &[f64], detrend: Detrend) -> Option<Trend> {
    assert_eq!(coords.len(), values.len(), "one value per coordinate");
    let n = values.len();
    let p = detrend.terms().len();
    let mean = |f: &dyn Fn(&(f64, f64)) -> f64| coords.iter().map(f).sum::<f64>() / n as f64;
    let origin = if n == 0 {
        (0.0, 0.0)
    } else {
        (mean(&|c| c.0), mean(&|c| c.1))
    };
    let z_mean = values.iter().sum::<f64>() / n.max(1) as f64;
    let total: f64 = values.iter().map(|z| (z - z_mean).powi(2)).sum();
    if p == 0 {
        return Some(Trend {
            detrend,
            origin,
            terms: detrend.terms(),
            coefficients: vec![],
            r2: 0.0,
            residuals: values.to_vec(),
        });
    }
    if n <= p {
        return None;
    }
    let rows: Vec<Vec<f64>> = coords
        .iter()
        .map(|&(x, y)| detrend.row(x - origin.0, y - origin.1))
        .collect();
    // Column-major copy of the design, reduced in place to R (upper p×p) by Householder
    // reflections, which are applied to the values too (Qᵀz).
    let mut a: Vec<Vec<f64>> = (0..p)
        .map(|j| rows.iter().map(|r| r[j]).collect())
        .collect();
    let mut qz = values.to_vec();
    let scale: f64 = a.iter().map(|col| norm(col)).fold(0.0, f64::max);
    for k in 0..p {
        let alpha = norm(&a[k][k..]);
        if alpha <= 1e-10 * scale {
            return None;
        }
        let alpha = if a[k][k] > 0.0 { -alpha } else { alpha };
        let mut v = a[k][k..].to_vec();
        v[0] -= alpha;
        let vv: f64 = v.iter().map(|t| t * t).sum();
        let reflect = |col: &mut [f64]| {
            let dot: f64 = v.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
            let f = 2.0 * dot / vv;
            for (c, vi) in col.iter_mut().zip(&v) {
                *c -= f * vi;
            }
        };
        for col in a.iter_mut().skip(k) {
            reflect(&mut col[k..]);
        }
        reflect(&mut qz[k..]);
    }
    let mut beta = vec![0.0; p];
    for i in (0..p).rev() {
        let s: f64 = (i + 1..p).map(|j| a[j][i] * beta[j]).sum();
        beta[i] = (qz[i] - s) / a[i][i];
    }
    let residuals: Vec<f64> = rows
        .iter()
        .zip(values)
        .map(|(r, &z)| z - r.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>())
        .collect();
    let rss: f64 = residuals.iter().map(|r| r * r).sum();
    Some(Trend {
        detrend,
        origin,
        terms: detrend.terms(),
        coefficients: beta,
        r2: if total > 0.0 { 1.0 - rss / total } else { 0.0 },
        residuals,
    })
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|t| t * t).sum::<f64>().sqrt()
}
