//! Every block's output shape, and the losses against hand-computed numbers.

use crate::common;

use burn::tensor::{Int, Tensor, TensorData};
use opencarbon::checked::Params;
use opencarbon::data::{BatchPlan, NeighbourIndex};
use opencarbon::model::aggregate_attention::AggregateAttention;
use opencarbon::model::config::{
    EncoderBatching, ImageEncoderConfig, MissingNeighbour, WindowOrder,
};
use opencarbon::model::image_encoder::ImageEncoder;
use opencarbon::model::neighbourhood_cnn::NeighbourhoodCnn;
use opencarbon::model::poi_encoder::PoiEncoder;
use opencarbon::model::regressor::Regressor;
use opencarbon::model::se::SqueezeExcitation;
use opencarbon::model::tabular_encoder::TabularEncoder;
use opencarbon::model::token_attention::TokenAttention;
use opencarbon::model::{BatchLayout, Modality, ModelConfig, TileBatch};
use opencarbon::train::config::ContrastiveConfig;
use opencarbon::train::loss::{info_nce, l1_sum};

fn randn<const D: usize>(shape: [usize; D]) -> Tensor<D> {
    Tensor::random(
        shape,
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &common::device(),
    )
}

#[test]
fn se_keeps_shape_and_gates_between_0_and_1() {
    let d = common::device();
    let se = SqueezeExcitation::new(32, &d);
    let x = randn([2, 32, 5, 5]).abs();
    let y = se.forward(x.clone());
    assert_eq!(y.dims(), [2, 32, 5, 5]);
    let ratio: Vec<f32> = (y / (x + 1e-6)).into_data().try_to_vec().unwrap();
    assert!(ratio.iter().all(|r| (-1e-3..=1.001).contains(r)));
}

#[test]
fn poi_encoder_shapes_at_256_and_64() {
    let d = common::device();
    for (side, se) in [(256, true), (256, false), (64, true)] {
        let enc = PoiEncoder::new(15, side, 32, se, &d);
        assert_eq!(
            enc.fc.weight.dims(),
            [
                opencarbon::model::poi_encoder::flattened_side(side).pow(2),
                32
            ]
        );
        assert_eq!(enc.forward(randn([2, 15, side, side])).dims(), [2, 32]);
    }
}

#[test]
fn image_encoder_shapes() {
    let d = common::device();
    let enc = ImageEncoder::new(32, ImageEncoderConfig::default(), &d);
    let x = randn([2, 3, 64, 64]).abs() * 100.0;
    assert_eq!(enc.features(enc.prepare(x.clone())).dims(), [2, 512]);
    assert_eq!(enc.forward(x).dims(), [2, 32]);
}

#[test]
fn image_encoder_flips_rgb_to_bgr() {
    let d = common::device();
    let enc = ImageEncoder::new(8, ImageEncoderConfig::default(), &d);
    let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &d).reshape([1, 3, 1, 1]);
    let v: Vec<f32> = enc.prepare(x).into_data().try_to_vec().unwrap();
    assert_eq!(v, vec![3.0, 2.0, 1.0]);
}

#[test]
fn small_blocks_shapes() {
    let d = common::device();
    assert_eq!(
        TabularEncoder::new(2, 32, 32, &d)
            .forward(randn([5, 2]))
            .dims(),
        [5, 32]
    );
    let (fused, beta) = AggregateAttention::new(32, 32, &d).forward(randn([5, 2, 32]));
    assert_eq!((fused.dims(), beta.dims()), ([5, 32], [5, 2]));
    let beta_sum: Vec<f32> = beta.sum_dim(1).into_data().try_to_vec().unwrap();
    assert!(beta_sum.iter().all(|s| (s - 1.0).abs() < 1e-5));
    let att = TokenAttention::new(2, &d);
    assert_eq!(att.self_attention(randn([5, 32])).dims(), [5, 32]);
    assert_eq!(att.forward(randn([5, 32]), randn([5, 32])).dims(), [5, 32]);
    assert_eq!(
        NeighbourhoodCnn::new(32, &d)
            .forward(randn([5, 32, 3, 3]))
            .dims(),
        [5, 32]
    );
    assert_eq!(
        Regressor::new(64, 32, &d).forward(randn([5, 64])).dims(),
        [5]
    );
}

/// A single modality is fused with weight 1, i.e. aggregate-attention is the identity.
#[test]
fn aggregate_attention_of_one_modality_is_identity() {
    let d = common::device();
    let z = randn([4, 1, 8]);
    let (fused, _) = AggregateAttention::new(8, 4, &d).forward(z.clone());
    let diff: f32 = (fused - z.reshape([4, 8])).abs().max().into_scalar();
    assert!(diff < 1e-6);
}

#[test]
fn full_network_forward_shapes_for_every_ablation() {
    let d = common::device();
    let city = common::tiny_city(3);
    let samples: Vec<usize> = city.samples().into_iter().take(6).collect();
    let tiles = opencarbon::data::DeviceTiles::upload(&city, None, &d);
    for (modalities, radius, batching) in [
        (
            vec![Modality::Image, Modality::Poi],
            1,
            EncoderBatching::Distinct,
        ),
        (
            vec![Modality::Image, Modality::Poi],
            1,
            EncoderBatching::PerPosition,
        ),
        (
            vec![Modality::Image, Modality::Poi],
            1,
            EncoderBatching::Script,
        ),
        (
            vec![Modality::Image, Modality::Poi],
            0,
            EncoderBatching::Distinct,
        ),
        (vec![Modality::Poi], 1, EncoderBatching::Distinct),
        (vec![Modality::Tabular], 2, EncoderBatching::Distinct),
        (
            vec![Modality::Image, Modality::Poi, Modality::Tabular],
            1,
            EncoderBatching::Distinct,
        ),
    ] {
        let config = ModelConfig {
            modalities: modalities.clone(),
            neighbourhood: radius,
            encoder_batching: batching,
            ..Default::default()
        };
        let model = config.checked().unwrap().init(&city.shapes(), &d).unwrap();
        let index = (radius > 0).then(|| NeighbourIndex::new(&city, radius));
        let plan = BatchPlan::new(&samples, index.as_ref(), batching, MissingNeighbour::Mask);
        let out = model.forward(tiles.gather(&plan.tiles, false), &plan.layout(&d));
        assert_eq!(out.prediction.dims(), [6], "{modalities:?} k={radius}");
        assert_eq!(out.centre.len(), modalities.len());
        for (_, e) in &out.centre {
            assert_eq!(e.dims(), [6, 32]);
        }
    }
}

/// The network gathers neighbours by row: masking a neighbour equals feeding a zero embedding.
#[test]
fn distinct_batching_encodes_each_tile_once() {
    let city = common::tiny_city(3);
    let index = NeighbourIndex::new(&city, 1);
    let samples: Vec<usize> = city.samples().into_iter().take(10).collect();
    let plan = BatchPlan::new(
        &samples,
        Some(&index),
        EncoderBatching::Distinct,
        MissingNeighbour::Mask,
    );
    let mut sorted = plan.tiles.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), plan.tiles.len(), "a tile is encoded twice");
    assert_eq!(plan.window_rows.len(), 10 * 9);
    for (b, &s) in samples.iter().enumerate() {
        for (j, n) in index.windows[s].iter().enumerate() {
            let row = plan.window_rows[b * 9 + j] as usize;
            match n {
                Some(t) => assert_eq!(plan.tiles[row], *t),
                None => assert_eq!(row, plan.tiles.len()),
            }
        }
        assert_eq!(plan.tiles[plan.centre_rows[b] as usize], s);
    }
    let script = BatchPlan::new(
        &samples,
        Some(&index),
        EncoderBatching::Distinct,
        MissingNeighbour::Tile0,
    );
    assert!(script
        .window_rows
        .iter()
        .all(|&r| (r as usize) < script.tiles.len()));
}

/// `encoder_batching: script` with `window_order: xy` and tile-0 neighbours encodes exactly the
/// tiles `main_contrastive.py` encodes, in its order: its neighbour matrix `[N, w, w]` (indexed
/// `[x − x₀ + k, y − y₀ + k]`, 0 where no tile is), flattened sample by sample and cut into w²
/// chunks of B, transcribed here from the script rather than from our index.
#[test]
fn script_batching_encodes_the_scripts_chunks() {
    let city = common::tiny_city(3);
    let lookup: std::collections::HashMap<(i64, i64), usize> = city
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| ((k.x, k.y), i))
        .collect();
    let k = 1i64;
    let w = 3usize;
    let script_matrix = |t: usize| -> Vec<usize> {
        let (x0, y0) = (city.keys[t].x, city.keys[t].y);
        let mut m = vec![0usize; w * w];
        for x in x0 - k..=x0 + k {
            for y in y0 - k..=y0 + k {
                if let Some(&i) = lookup.get(&(x, y)) {
                    m[((x - x0 + k) as usize) * w + (y - y0 + k) as usize] = i;
                }
            }
        }
        m
    };
    // A batch with edge tiles, whose missing neighbours become tile 0.
    let samples: Vec<usize> = city.samples().into_iter().step_by(3).take(7).collect();
    let flattened: Vec<usize> = samples.iter().flat_map(|&s| script_matrix(s)).collect();
    let index = NeighbourIndex::with_order(&city, 1, WindowOrder::Xy);
    let plan = BatchPlan::new(
        &samples,
        Some(&index),
        EncoderBatching::Script,
        MissingNeighbour::Tile0,
    );
    assert_eq!(plan.tiles, flattened);
    assert_eq!(plan.encode_chunks, 9, "w² chunks of B = {}", samples.len());
    // Each sample reads its own w² rows, in the script's [x, y] grid, its centre in the middle.
    let own: Vec<i64> = (0..samples.len() as i64 * 9).collect();
    assert_eq!(plan.window_rows, own);
    for (b, &s) in samples.iter().enumerate() {
        assert_eq!(plan.tiles[plan.centre_rows[b] as usize], s);
    }
    // With masking, a missing neighbour reads the zero row instead, and the chunks keep their size.
    let masked = BatchPlan::new(
        &samples,
        Some(&index),
        EncoderBatching::Script,
        MissingNeighbour::Mask,
    );
    assert_eq!(masked.tiles.len(), samples.len() * 9);
    for (b, &s) in samples.iter().enumerate() {
        for (j, n) in index.windows[s].iter().enumerate() {
            let row = masked.window_rows[b * 9 + j] as usize;
            match n {
                Some(t) => assert_eq!(masked.tiles[row], *t),
                None => assert_eq!(row, masked.tiles.len()),
            }
        }
    }
    assert!(
        masked
            .window_rows
            .iter()
            .any(|&r| r as usize == masked.tiles.len()),
        "the batch has no edge tile, so masking was not exercised"
    );
}

#[test]
fn l1_sum_is_a_sum() {
    let d = common::device();
    let p = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &d);
    let y = Tensor::<1>::from_floats([1.5, 1.0, 3.0], &d);
    assert!((l1_sum(p, y).into_scalar::<f32>() - 1.5).abs() < 1e-6);
}

#[test]
fn info_nce_matches_hand_computation() {
    // a = I, b = [[1,0],[2,3]], τ = 1: S = a bᵀ = [[1,2],[0,3]].
    // Rows (image→POI): ln(1+e^(S01−S00)) = ln(1+e), ln(1+e^(S10−S11)) = ln(1+e⁻³).
    // Columns: ln(1+e^(S10−S00)) = ln(1+e⁻¹), ln(1+e^(S01−S11)) = ln(1+e⁻¹).
    let d = common::device();
    let a = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &d);
    let b = Tensor::<2>::from_floats([[1.0, 0.0], [2.0, 3.0]], &d);
    let e = std::f64::consts::E;
    let rows = ((1.0 + e).ln() + (1.0 + e.powi(-3)).ln()) / 2.0;
    let cols = (1.0 + 1.0 / e).ln();
    let config = ContrastiveConfig {
        temperature: 1.0,
        ..Default::default()
    };
    let got = info_nce(a.clone(), b.clone(), &config).into_scalar::<f32>() as f64;
    assert!((got - rows).abs() < 1e-5, "{got} vs {rows}");
    let sym = ContrastiveConfig {
        direction: opencarbon::train::config::ContrastiveDirection::Symmetric,
        ..config.clone()
    };
    let got = info_nce(a.clone(), b.clone(), &sym).into_scalar::<f32>() as f64;
    assert!((got - (rows + cols) / 2.0).abs() < 1e-5, "{got}");
    // τ scales the logits: τ = 0.5 doubles every difference.
    let half = ContrastiveConfig {
        temperature: 0.5,
        ..config
    };
    let got = info_nce(a, b, &half).into_scalar::<f32>() as f64;
    let want = ((1.0 + e.powi(2)).ln() + (1.0 + e.powi(-6)).ln()) / 2.0;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn layout_rows_select_embeddings() {
    // A batch layout is plain indices: check select semantics the network relies on.
    let d = common::device();
    let e = Tensor::<2>::from_floats([[1.0], [2.0], [3.0]], &d);
    let idx = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0, 3], [3]), &d);
    let padded = Tensor::cat(vec![e, Tensor::zeros([1, 1], &d)], 0);
    let v: Vec<f32> = padded.select(0, idx).into_data().try_to_vec().unwrap();
    assert_eq!(v, vec![3.0, 1.0, 0.0]);
    let _ = (
        BatchLayout {
            batch_size: 0,
            centre: Tensor::<1, Int>::zeros([0], &d),
            window: None,
            encode_chunks: 1,
        },
        TileBatch {
            image: None,
            poi: None,
            tabular: None,
        },
    );
}

/// Whole-city inference (each needed tile encoded once, then fused in chunks) gives the same
/// predictions as one forward pass over the same samples in eval mode.
#[test]
fn whole_city_inference_equals_batch_forward() {
    use opencarbon::data::SplitConfig;
    use opencarbon::train::{predict, Prepared, TrainConfig};
    let d = common::device();
    let city = common::tiny_city(5);
    let split = SplitConfig::default().split(&city, 1).unwrap();
    let config = ModelConfig {
        modalities: vec![Modality::Image, Modality::Poi, Modality::Tabular],
        ..Default::default()
    }
    .checked()
    .unwrap();
    let model = config.init_seeded(&city.shapes(), &d, 7).unwrap();
    let data = Prepared::new(&city, &split, &config, &TrainConfig::default(), &d);
    let samples = city.samples();
    let chunked = predict(&model, &data, &samples, 5);
    let index = NeighbourIndex::new(&city, 1);
    let plan = BatchPlan::new(
        &samples,
        Some(&index),
        EncoderBatching::Distinct,
        MissingNeighbour::Mask,
    );
    let whole: Vec<f32> = model
        .forward(data.tiles.gather(&plan.tiles, false), &plan.layout(&d))
        .prediction
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(chunked.len(), whole.len());
    for (a, b) in chunked.iter().zip(&whole) {
        assert!((a - *b as f64).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }
}
