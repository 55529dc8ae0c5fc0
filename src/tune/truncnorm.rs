//! The truncated normal as Optuna's `samplers/_tpe/_truncnorm.py` computes it (itself from
//! SciPy): log Φ with its asymptotic series far in the left tail, the log mass of an interval
//! worked in the left tail for accuracy, and the quantile function by Newton's method on log Φ.
//! Scalar versions of the same formulas, so TPE's densities match Optuna's.

use super::erf::{erf, erfc};

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Φ(a), as `_ndtr_single`.
fn ndtr_single(a: f64) -> f64 {
    let x = a / std::f64::consts::SQRT_2;
    if x < -std::f64::consts::FRAC_1_SQRT_2 {
        0.5 * erfc(-x)
    } else if x < std::f64::consts::FRAC_1_SQRT_2 {
        0.5 + 0.5 * erf(x)
    } else {
        1.0 - 0.5 * erfc(x)
    }
}

/// Φ(a) as `_ndtr` (through erf alone: Optuna's choice, kept for the central mass).
fn ndtr(a: f64) -> f64 {
    0.5 + 0.5 * erf(a / std::f64::consts::SQRT_2)
}

/// ln Φ(a).
pub fn log_ndtr(a: f64) -> f64 {
    if a > 6.0 {
        return -ndtr_single(-a);
    }
    if a > -20.0 {
        return ndtr_single(a).ln();
    }
    // Asymptotic series of the Mills ratio, summed until it stops changing.
    let log_lhs = -0.5 * a * a - (-a).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
    let (mut last, mut rhs, mut numerator, mut denom) = (0.0f64, 1.0f64, 1.0f64, 1.0f64);
    let denom_cons = 1.0 / (a * a);
    let mut sign = 1.0;
    let mut i = 0.0;
    while (last - rhs).abs() > f64::EPSILON {
        i += 1.0;
        last = rhs;
        sign = -sign;
        denom *= denom_cons;
        numerator *= 2.0 * i - 1.0;
        rhs += sign * numerator * denom;
    }
    log_lhs + rhs.ln()
}

fn log_diff(log_p: f64, log_q: f64) -> f64 {
    log_p + (-(log_q - log_p).exp()).ln_1p()
}

fn log_sum(log_p: f64, log_q: f64) -> f64 {
    // numpy's logaddexp.
    if log_p == log_q {
        return log_p + std::f64::consts::LN_2;
    }
    let m = log_p.max(log_q);
    m + (-(log_p - log_q).abs()).exp().ln_1p()
}

/// ln(Φ(b) − Φ(a)) for a ≤ b.
pub fn log_gauss_mass(a: f64, b: f64) -> f64 {
    if b <= 0.0 {
        log_diff(log_ndtr(b), log_ndtr(a))
    } else if a > 0.0 {
        log_diff(log_ndtr(-a), log_ndtr(-b))
    } else {
        (-ndtr(a) - ndtr(-b)).ln_1p()
    }
}

/// The x with ln Φ(x) = y (y ≤ 0), as `_ndtri_exp`.
fn ndtri_exp(y: f64) -> f64 {
    let flipped = y > -1e-2;
    let z = if flipped { (-y.exp_m1()).ln() } else { y };
    let mut x = if z < -5.0 {
        -(-2.0 * (z + LN_SQRT_2PI)).sqrt()
    } else {
        -(3f64.sqrt() / std::f64::consts::PI) * (-z).exp_m1().ln()
    };
    for _ in 0..100 {
        let log_ndtr_x = log_ndtr(x);
        let log_pdf_x = -0.5 * x * x - LN_SQRT_2PI;
        let dx = (log_ndtr_x - z) * (log_ndtr_x - log_pdf_x).exp();
        x -= dx;
        if dx.abs() < 1e-8 * x.abs() {
            break;
        }
    }
    if flipped {
        -x
    } else {
        x
    }
}

/// The q-quantile of the standard normal truncated to [a, b].
pub fn ppf(q: f64, a: f64, b: f64) -> f64 {
    if a == b {
        return f64::NAN;
    }
    if q == 0.0 {
        return a;
    }
    if q == 1.0 {
        return b;
    }
    let log_mass = log_gauss_mass(a, b);
    if a < 0.0 {
        ndtri_exp(log_sum(log_ndtr(a), q.ln() + log_mass))
    } else {
        -ndtri_exp(log_sum(log_ndtr(-b), (-q).ln_1p() + log_mass))
    }
}

/// ln density at x of N(loc, scale²) truncated to [loc + a·scale, loc + b·scale].
pub fn logpdf(x: f64, a: f64, b: f64, loc: f64, scale: f64) -> f64 {
    let z = (x - loc) / scale;
    if a == b {
        return f64::NAN;
    }
    if z < a || z > b {
        return f64::NEG_INFINITY;
    }
    -z * z / 2.0 - LN_SQRT_2PI - log_gauss_mass(a, b) - scale.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppf_inverts_the_mass() {
        // Φ(ppf(q)) − Φ(a) = q (Φ(b) − Φ(a)), both tails and the centre.
        for (a, b) in [(-1.0, 2.0), (0.5, 3.0), (-8.0, -6.5), (-30.0, 30.0)] {
            for q in [0.01, 0.3, 0.5, 0.9, 0.999] {
                let x = ppf(q, a, b);
                assert!((a..=b).contains(&x), "ppf({q}, {a}, {b}) = {x}");
                let share = (log_gauss_mass(a, x) - log_gauss_mass(a, b)).exp();
                assert!((share - q).abs() < 1e-7, "{a} {b} {q}: {share}");
            }
        }
    }

    #[test]
    fn log_ndtr_far_left_uses_the_series() {
        // Optuna's _log_ndtr(-25) = -316.6394080080202.
        assert!((log_ndtr(-25.0) + 316.639_408_008_020_2).abs() < 1e-9);
        assert!((log_ndtr(0.0) - 0.5f64.ln()).abs() < 1e-15);
    }
}
