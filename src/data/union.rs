//! Several cities as one tile store, for training on more than one city and for transfer.
//! Each part keeps its tiles in order; parts after the first are shifted along x so that no
//! neighbourhood window or spatial block spans two cities. Before joining, every city must carry
//! the same inputs (modalities, covariate columns, POI categories, tile sizes); the error says
//! what differs.

use std::ops::Range;

use anyhow::{bail, Result};

use super::city::{City, PoiStack, Tabular, TileKey};
use crate::model::Modality;

/// Gap, in tiles, between two parts, and the alignment of each later part's first column: wider
/// than any window, and a multiple of every block size that divides 64, so no window or spatial
/// block spans two cities. (A later part's blocks start at its own first column.)
const GAP: i64 = 64;

/// Where one city lies in a union.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    /// Tile indices of the part in the union.
    pub range: Range<usize>,
    /// Added to the part's x keys; subtract it to get the city's own keys back.
    pub x_offset: i64,
}

impl Part {
    /// The city's own key of union tile `i`.
    pub fn original_key(&self, union: &City, i: usize) -> TileKey {
        let k = union.keys[i];
        TileKey {
            x: k.x - self.x_offset,
            y: k.y,
        }
    }
}

/// Drops the inputs a consumer does not read, so that cities are compared only on what matters.
pub fn keep_only(city: &mut City, modalities: &[Modality]) {
    if !modalities.contains(&Modality::Image) {
        city.images = None;
    }
    if !modalities.contains(&Modality::Poi) {
        city.poi = None;
    }
    if !modalities.contains(&Modality::Tabular) {
        city.tabular = None;
    }
}

/// Makes `other` carry exactly `reference`'s inputs: the same modalities and tile sizes, and the
/// same covariate columns and POI categories (reordered to the reference's order when only the
/// order differs). Fails, naming both cities and what differs, otherwise.
pub fn conform(reference: &City, other: &mut City) -> Result<()> {
    let mut problems = Vec::new();
    let has = |c: &City| {
        [
            (Modality::Image, c.images.is_some()),
            (Modality::Poi, c.poi.is_some()),
            (Modality::Tabular, c.tabular.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(m, _)| m.name())
        .collect::<Vec<_>>()
    };
    let (mine, theirs) = (has(reference), has(other));
    if mine != theirs {
        problems.push(format!(
            "modalities differ: `{}` has [{}], `{}` has [{}]",
            reference.name,
            mine.join(", "),
            other.name,
            theirs.join(", ")
        ));
    }
    if let (Some(a), Some(b)) = (&reference.images, &other.images) {
        if a.side != b.side {
            problems.push(format!(
                "image sizes differ: `{}` has {}², `{}` has {}²",
                reference.name, a.side, other.name, b.side
            ));
        }
    }
    if let (Some(a), Some(b)) = (&reference.poi, other.poi.as_mut()) {
        if a.side != b.side {
            problems.push(format!(
                "POI raster sizes differ: `{}` has {}², `{}` has {}²",
                reference.name, a.side, other.name, b.side
            ));
        }
        match order_of(&a.categories, &b.categories) {
            Ok(order) => reorder_poi(b, &order),
            Err((missing, extra)) => problems.push(format!(
                "POI categories differ: `{}` lacks [{}] of `{}`, and has [{}] that `{}` does not",
                other.name,
                missing.join(", "),
                reference.name,
                extra.join(", "),
                reference.name
            )),
        }
    }
    if let (Some(a), Some(b)) = (&reference.tabular, other.tabular.as_mut()) {
        match order_of(&a.columns, &b.columns) {
            Ok(order) => reorder_tabular(b, &order),
            Err((missing, extra)) => problems.push(format!(
                "covariate columns differ: `{}` lacks [{}] of `{}`, and has [{}] that `{}` does not",
                other.name,
                missing.join(", "),
                reference.name,
                extra.join(", "),
                reference.name
            )),
        }
    }
    if !problems.is_empty() {
        bail!(
            "city `{}` does not match city `{}`:\n  {}",
            other.name,
            reference.name,
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// For each name of `want`, its position in `have`; or the names missing from and extra in `have`.
fn order_of(want: &[String], have: &[String]) -> Result<Vec<usize>, (Vec<String>, Vec<String>)> {
    let missing: Vec<String> = want.iter().filter(|w| !have.contains(w)).cloned().collect();
    let extra: Vec<String> = have.iter().filter(|h| !want.contains(h)).cloned().collect();
    if !missing.is_empty() || !extra.is_empty() || want.len() != have.len() {
        return Err((missing, extra));
    }
    Ok(want
        .iter()
        .map(|w| have.iter().position(|h| h == w).expect("checked above"))
        .collect())
}

fn reorder_poi(p: &mut PoiStack, order: &[usize]) {
    if order.iter().enumerate().all(|(i, &j)| i == j) {
        return;
    }
    let (c, plane) = (order.len(), p.side * p.side);
    let n = p.data.len() / (c * plane);
    let mut data = Vec::with_capacity(p.data.len());
    for t in 0..n {
        for &j in order {
            let start = (t * c + j) * plane;
            data.extend_from_slice(&p.data[start..start + plane]);
        }
    }
    p.data = data;
    p.categories = order.iter().map(|&j| p.categories[j].clone()).collect();
    p.scale = order.iter().map(|&j| p.scale[j]).collect();
}

fn reorder_tabular(t: &mut Tabular, order: &[usize]) {
    let f = order.len();
    t.values = t
        .values
        .chunks(f)
        .flat_map(|row| order.iter().map(|&j| row[j]).collect::<Vec<_>>())
        .collect();
    t.columns = order.iter().map(|&j| t.columns[j].clone()).collect();
}

/// Joins cities (checked with [`conform`] against the first) into one, named `a+b+…`.
///
/// POI rasters are requantised to a common per-channel scale (the largest of the parts), so a
/// part with a smaller scale loses up to half a quantum of its new scale per value.
pub fn join(mut cities: Vec<City>) -> Result<(City, Vec<Part>)> {
    if cities.is_empty() {
        bail!("no cities to join");
    }
    let (first, rest) = cities.split_at_mut(1);
    for other in rest.iter_mut() {
        conform(&first[0], other)?;
    }
    let common_scale: Option<Vec<f32>> = cities[0].poi.as_ref().map(|p0| {
        (0..p0.scale.len())
            .map(|c| {
                cities
                    .iter()
                    .map(|city| city.poi.as_ref().expect("conformed").scale[c])
                    .fold(0f32, f32::max)
            })
            .collect()
    });
    let mut parts = Vec::new();
    let mut union = City {
        name: cities
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        keys: vec![],
        emission: vec![],
        images: cities[0].images.as_ref().map(|s| super::ImageStack {
            side: s.side,
            data: vec![],
        }),
        poi: cities[0].poi.as_ref().map(|p| PoiStack {
            categories: p.categories.clone(),
            side: p.side,
            data: vec![],
            scale: common_scale.clone().expect("poi present"),
        }),
        tabular: cities[0].tabular.as_ref().map(|t| Tabular {
            columns: t.columns.clone(),
            values: vec![],
        }),
        district: cities.iter().all(|c| c.district.is_some()).then(Vec::new),
    };
    let mut cursor: Option<i64> = None;
    for city in cities {
        let (min_x, max_x) = city.keys.iter().fold((i64::MAX, i64::MIN), |(lo, hi), k| {
            (lo.min(k.x), hi.max(k.x))
        });
        // The first part keeps its keys; later ones start on the next aligned column after a gap.
        let x_offset = match cursor {
            None => 0,
            Some(c) => c - min_x,
        };
        let next = max_x + x_offset + GAP;
        cursor = Some(next + (GAP - next.rem_euclid(GAP)) % GAP);
        let start = union.keys.len();
        union.keys.extend(city.keys.iter().map(|k| TileKey {
            x: k.x + x_offset,
            y: k.y,
        }));
        union.emission.extend_from_slice(&city.emission);
        if let (Some(u), Some(s)) = (union.images.as_mut(), city.images) {
            u.data.extend(s.data);
        }
        if let (Some(u), Some(p)) = (union.poi.as_mut(), city.poi) {
            let plane = p.side * p.side;
            for (j, chunk) in p.data.chunks(plane).enumerate() {
                let c = j % p.scale.len();
                let ratio = p.scale[c] / u.scale[c];
                if ratio == 1.0 {
                    u.data.extend_from_slice(chunk);
                } else {
                    u.data.extend(
                        chunk
                            .iter()
                            .map(|&v| (v as f32 * ratio).round().min(255.0) as u8),
                    );
                }
            }
        }
        if let (Some(u), Some(t)) = (union.tabular.as_mut(), city.tabular) {
            u.values.extend(t.values);
        }
        if let (Some(u), Some(d)) = (union.district.as_mut(), city.district) {
            u.extend(d);
        }
        parts.push(Part {
            name: city.name,
            range: start..union.keys.len(),
            x_offset,
        });
    }
    union.validate()?;
    Ok((union, parts))
}
