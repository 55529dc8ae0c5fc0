//! The gradient-boosted-trees baseline (`gbdt` 0.1.3) against scikit-learn's histogram GBM on
//! the same data and split (tests/fixtures/gbt_reference.json, from
//! tools/stats/make_gbt_fixture.py): Friedman #1, 600 training and 300 test rows. Different
//! algorithms (exact splits against 255 histogram bins) give different trees, so the test pins the
//! held-out R² within 0.03 of scikit-learn's, not the predictions.

use opencarbon::baselines::gbt::{Gbt, GbtParams};
use opencarbon::metrics::Metrics;
use serde_json::Value;

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn gbt_reaches_scikit_learns_accuracy_on_the_same_split() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gbt_reference.json"
    );
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = Gbt::fit(
        &matrix(&fx["x_train"]),
        &vector(&fx["y_train"]),
        GbtParams::default(),
    )
    .unwrap();
    let predicted = model.predict(&matrix(&fx["x_test"]));
    let ours = Metrics::compute(&vector(&fx["y_test"]), &predicted).r2;
    let sklearn = fx["r2_same_settings"].as_f64().unwrap();
    eprintln!("held-out R²: gbdt {ours:.4}, scikit-learn HistGradientBoosting {sklearn:.4} (defaults {:.4})", fx["r2_defaults"].as_f64().unwrap());
    assert!(
        ours >= sklearn - 0.03,
        "gbdt R² {ours:.4} against scikit-learn's {sklearn:.4}"
    );
}
