//! Per-city input normalisation, an explicit transfer option (off by default): each city's
//! covariates are standardised with that city's own mean and std over all its tiles, and each POI
//! channel is rescaled to a mean density of 1 over the city. Only inputs are used, never
//! emissions, so it is available zero-shot. Images are left as they are.

use super::city::City;

pub fn per_city_inputs(city: &mut City) {
    if let Some(t) = city.tabular.as_mut() {
        let f = t.columns.len();
        let n = (t.values.len() / f.max(1)).max(1) as f64;
        for c in 0..f {
            let column = t.values.iter().skip(c).step_by(f);
            let mean = column.clone().map(|&v| v as f64).sum::<f64>() / n;
            let var = column.map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            // A constant column becomes 0 rather than dividing by zero.
            let std = if var > 1e-12 { var.sqrt() } else { 1.0 };
            for v in t.values.iter_mut().skip(c).step_by(f) {
                *v = ((*v as f64 - mean) / std) as f32;
            }
        }
    }
    if let Some(p) = city.poi.as_mut() {
        let (c, plane) = (p.categories.len(), p.side * p.side);
        let mut sums = vec![0f64; c];
        let mut count = 0usize;
        for (j, chunk) in p.data.chunks(plane).enumerate() {
            sums[j % c] += chunk.iter().map(|&v| v as f64).sum::<f64>();
            if j % c == 0 {
                count += plane;
            }
        }
        for (ch, sum) in sums.iter().enumerate() {
            let mean = sum * p.scale[ch] as f64 / count.max(1) as f64;
            if mean > 0.0 {
                p.scale[ch] = (p.scale[ch] as f64 / mean) as f32;
            }
        }
    }
}
