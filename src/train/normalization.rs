//! What a trained run needs besides its weights to predict a new area: the target's shift and
//! scale, the covariate standardisation and the inputs it was trained on. Written by every network
//! run as `normalization.json` (`predict::normalization` recomputes it for older run directories).

use serde::{Deserialize, Serialize};

use super::Prepared;
use crate::data::{City, ImageStack, PoiStack, Standardizer, Tabular};
use crate::model::Modality;
use crate::stats::aoa::Applicability;

pub const FILE: &str = "normalization.json";

/// The inputs a run was trained on, as far as a new area must match them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSignature {
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_side: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poi_categories: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poi_side: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariates: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// The network predicts (ln-emission − shift) / scale.
    pub target_shift: f64,
    pub target_scale: f64,
    /// Mean and std of each covariate over the training tiles, in `inputs.covariates` order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariates: Option<Standardizer>,
    pub inputs: InputSignature,
    pub train_tiles: usize,
    /// The training tiles' inputs, for the area of applicability (absent in older runs' files:
    /// then it is rebuilt from the resolved spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicability: Option<Applicability>,
}

impl Normalization {
    /// From a prepared city; only the modalities the model reads enter the signature.
    pub fn of(data: &Prepared, modalities: &[Modality], train: &[usize], seed: u64) -> Self {
        let scaling = (data.target_shift, data.target_scale);
        let standardizer = data.standardizer.clone();
        Self::new(data.city, standardizer, scaling, modalities, train, seed)
    }

    pub fn new(
        city: &City,
        standardizer: Option<Standardizer>,
        (target_shift, target_scale): (f64, f64),
        modalities: &[Modality],
        train: &[usize],
        seed: u64,
    ) -> Self {
        let uses = |m| modalities.contains(&m);
        let images = city.images.as_ref().filter(|_| uses(Modality::Image));
        let poi = city.poi.as_ref().filter(|_| uses(Modality::Poi));
        let tabular = city.tabular.as_ref().filter(|_| uses(Modality::Tabular));
        Self {
            target_shift,
            target_scale,
            covariates: standardizer.filter(|_| tabular.is_some()),
            inputs: InputSignature {
                city: city.name.clone(),
                image_side: images.map(|s| s.side),
                poi_categories: poi.map(|p| p.categories.clone()),
                poi_side: poi.map(|p| p.side),
                covariates: tabular.map(|t| t.columns.clone()),
            },
            train_tiles: train.len(),
            applicability: Some(Applicability::fit(city, train, modalities, seed)),
        }
    }

    /// A tile-less city with the training inputs, for `union::conform` (transfer's check).
    pub fn reference_city(&self) -> City {
        let s = &self.inputs;
        City {
            name: format!("{} (the run's training city)", s.city),
            keys: vec![],
            emission: vec![],
            images: s.image_side.map(|side| ImageStack { side, data: vec![] }),
            poi: s.poi_categories.as_ref().map(|c| PoiStack {
                categories: c.clone(),
                side: s.poi_side.unwrap_or(0),
                data: vec![],
                scale: vec![1.0; c.len()],
            }),
            tabular: s.covariates.as_ref().map(|c| Tabular {
                columns: c.clone(),
                values: vec![],
            }),
            district: None,
        }
    }
}
