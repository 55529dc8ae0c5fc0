//! Every statistic of `opencarbon::stats` against SciPy's (and statsmodels' Holm) value on fixed
//! inputs: `tests/fixtures/stats.json`, written once by `tools/stats/make_fixtures.py`.

use opencarbon::stats::{paired, ranks, special};
use serde_json::Value;

fn fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stats.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

/// |ours − SciPy| ≤ 1e-9 · max(1, |SciPy|).
fn close(what: &str, ours: f64, scipy: f64) {
    assert!(
        (ours - scipy).abs() <= 1e-9 * scipy.abs().max(1.0),
        "{what}: ours {ours:e}, SciPy {scipy:e}, difference {:e}",
        ours - scipy
    );
}

#[test]
fn special_functions_match_scipy() {
    let fx = fixtures();
    let rows = |key: &str| fx[key].as_array().unwrap().clone();
    for r in rows("ln_gamma") {
        close("ln_gamma", special::ln_gamma(f(&r[0])), f(&r[1]));
    }
    for r in rows("beta_inc") {
        close(
            "beta_inc",
            special::beta_inc(f(&r[0]), f(&r[1]), f(&r[2])),
            f(&r[3]),
        );
    }
    for r in rows("gamma_q") {
        close("gamma_q", special::gamma_q(f(&r[0]), f(&r[1])), f(&r[2]));
    }
    for r in rows("normal_cdf") {
        close("normal_cdf", special::normal_cdf(f(&r[0])), f(&r[1]));
    }
    for r in rows("t_two_sided") {
        close(
            "t_two_sided",
            special::t_two_sided(f(&r[0]), f(&r[1])),
            f(&r[2]),
        );
    }
    for r in rows("t_critical") {
        close(
            "t_critical",
            special::t_critical(f(&r[0]), f(&r[1])),
            f(&r[2]),
        );
    }
    for r in rows("chi2_sf") {
        close("chi2_sf", special::chi2_sf(f(&r[0]), f(&r[1])), f(&r[2]));
    }
    for r in rows("nct_cdf") {
        close(
            "nct_cdf",
            special::nct_cdf(f(&r[0]), f(&r[1]), f(&r[2])),
            f(&r[3]),
        );
    }
}

#[test]
fn paired_tests_match_scipy() {
    let fx = fixtures();
    for case in fx["paired_t"].as_array().unwrap() {
        let (a, b) = (floats(&case["a"]), floats(&case["b"]));
        let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        let plain = paired::paired_t(&d, None);
        close("ttest_rel t", plain.t, f(&case["t"]));
        close("ttest_rel p", plain.p, f(&case["p"]));
        let corrected = paired::paired_t(&d, Some(f(&case["ratio"])));
        close("Nadeau-Bengio t", corrected.t, f(&case["t_corrected"]));
        close("Nadeau-Bengio p", corrected.p, f(&case["p_corrected"]));
        close("d_z", paired::effect_size(&d), f(&case["dz"]));
    }
    let methods: Vec<&str> = fx["wilcoxon"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let w = paired::wilcoxon(&floats(&case["d"])).unwrap();
            close("wilcoxon statistic", w.statistic, f(&case["statistic"]));
            close(&format!("wilcoxon p ({})", w.method), w.p, f(&case["p"]));
            w.method
        })
        .collect();
    // The fixture exercises every branch SciPy's method='auto' takes.
    for m in ["exact", "permutation", "asymptotic"] {
        assert!(methods.contains(&m), "{methods:?}");
    }
    assert!(paired::wilcoxon(&[0.0, 0.0]).is_none());
}

#[test]
fn power_holm_and_ranks_match_scipy() {
    let fx = fixtures();
    for r in fx["power"].as_array().unwrap() {
        close(
            "power",
            paired::power(f(&r[0]), r[1].as_u64().unwrap() as usize, 0.05, None),
            f(&r[2]),
        );
    }
    for r in fx["pairs_for_power"].as_array().unwrap() {
        assert_eq!(
            paired::pairs_for_power(f(&r[0]), 0.05, 0.8, None),
            Some(r[1].as_u64().unwrap() as usize),
            "d_z {}",
            r[0]
        );
    }
    assert_eq!(paired::pairs_for_power(0.0, 0.05, 0.8, None), None);
    for r in fx["power_corrected"].as_array().unwrap() {
        close(
            "corrected power",
            paired::power(
                f(&r[0]),
                r[1].as_u64().unwrap() as usize,
                0.05,
                Some(f(&r[2])),
            ),
            f(&r[3]),
        );
    }
    for r in fx["pairs_for_power_corrected"].as_array().unwrap() {
        assert_eq!(
            paired::pairs_for_power(f(&r[0]), 0.05, 0.8, Some(f(&r[1]))),
            r[2].as_u64().map(|n| n as usize),
            "d_z {}, ratio {}",
            r[0],
            r[1]
        );
    }
    let holm = paired::holm(&floats(&fx["holm"]["p"]));
    for (ours, theirs) in holm.iter().zip(floats(&fx["holm"]["adjusted"])) {
        close("holm", *ours, theirs);
    }
    for case in fx["friedman"].as_array().unwrap() {
        let table: Vec<Vec<f64>> = case["table"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let (chi2, p) = ranks::friedman(&table).unwrap();
        close("friedman statistic", chi2, f(&case["statistic"]));
        close("friedman p", p, f(&case["p"]));
        for (ours, theirs) in ranks::mean_ranks(&table, true)
            .iter()
            .zip(floats(&case["mean_ranks_higher_better"]))
        {
            close("mean rank", *ours, theirs);
        }
    }
    for r in fx["nemenyi_q"].as_array().unwrap() {
        let k = r[0].as_u64().unwrap() as usize;
        close(
            &format!("nemenyi q, k = {k}"),
            ranks::nemenyi_q(k, 0.05),
            f(&r[1]),
        );
    }
    // Demšar's example scale: 4 variants over 14 datasets, CD = q · √(k(k+1)/6N).
    close(
        "nemenyi cd",
        ranks::nemenyi_cd(4, 14, 0.05),
        ranks::nemenyi_q(4, 0.05) * (20.0f64 / 84.0).sqrt(),
    );
}

/// The bootstrap interval is seeded (the same seed, the same interval), holds the mean, and
/// narrows as pairs are added; it is not SciPy's (another random stream), so it is pinned by
/// these properties instead.
#[test]
fn bootstrap_interval_is_seeded_and_holds_the_mean() {
    let d: Vec<f64> = (0..12)
        .map(|i| 0.02 + 0.01 * ((i * 7 % 5) as f64 - 2.0))
        .collect();
    let (lo, hi) = paired::bootstrap_ci(&d, 0.95, 10_000, 3);
    assert_eq!((lo, hi), paired::bootstrap_ci(&d, 0.95, 10_000, 3));
    let m = d.iter().sum::<f64>() / d.len() as f64;
    assert!(lo < m && m < hi, "{lo} {m} {hi}");
    let more: Vec<f64> = d.iter().cycle().take(48).copied().collect();
    let (lo4, hi4) = paired::bootstrap_ci(&more, 0.95, 10_000, 3);
    assert!(hi4 - lo4 < hi - lo);
    let one = paired::bootstrap_ci(&[0.3], 0.95, 100, 1);
    assert_eq!(one, (0.3, 0.3));
}
