//! Gradient-boosted regression trees through the `gbdt` crate (mesalock-linux/gbdt-rs), squared
//! error. The pure-Rust GBM that builds on stable Rust (perpetual needs nightly; the others wrap C++).

use anyhow::{bail, Result};
use gbdt::config::Config;
use gbdt::decision_tree::{Data, DataVec};
use gbdt::gradient_boost::GBDT;

/// Saved in a baseline run's `model.json` through gbdt's own serde form of its trees.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Gbt {
    model: GBDT,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GbtParams {
    pub trees: usize,
    pub depth: u32,
    pub shrinkage: f32,
}

impl Default for GbtParams {
    fn default() -> Self {
        Self {
            trees: 200,
            depth: 4,
            shrinkage: 0.05,
        }
    }
}

impl Gbt {
    pub fn fit(x: &[Vec<f64>], y: &[f64], params: GbtParams) -> Result<Self> {
        if x.is_empty() || x.len() != y.len() {
            bail!("gbt: {} rows for {} targets", x.len(), y.len());
        }
        if params.trees == 0 || params.depth == 0 || !(params.shrinkage > 0.0) {
            bail!("gbt: trees, depth and shrinkage must be positive");
        }
        let mut config = Config::new();
        config.set_feature_size(x[0].len());
        config.set_max_depth(params.depth);
        config.set_iterations(params.trees);
        config.set_shrinkage(params.shrinkage);
        config.set_min_leaf_size(3);
        config.set_loss("SquaredError");
        let mut data: DataVec = x
            .iter()
            .zip(y)
            .map(|(r, &t)| {
                Data::new_training_data(r.iter().map(|&v| v as f32).collect(), 1.0, t as f32, None)
            })
            .collect();
        let mut model = GBDT::new(&config);
        model.fit(&mut data);
        Ok(Self { model })
    }

    pub fn predict(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let data: DataVec = x
            .iter()
            .map(|r| Data::new_test_data(r.iter().map(|&v| v as f32).collect(), None))
            .collect();
        self.model
            .predict(&data)
            .into_iter()
            .map(f64::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_step_function() {
        let x: Vec<Vec<f64>> = (0..400)
            .map(|i| vec![(i % 20) as f64, (i / 20) as f64])
            .collect();
        let y: Vec<f64> = x
            .iter()
            .map(|r| if r[0] < 10.0 { 1.0 } else { 5.0 })
            .collect();
        let model = Gbt::fit(&x, &y, GbtParams::default()).unwrap();
        let p = model.predict(&[vec![2.0, 3.0], vec![15.0, 3.0]]);
        assert!(
            (p[0] - 1.0).abs() < 0.3 && (p[1] - 5.0).abs() < 0.3,
            "{p:?}"
        );
    }
}
