//! Numerical parity with PyTorch, block by block. `tools/parity/make_fixtures.py` builds each block
//! of MODEL.md in PyTorch with seeded weights and writes the state dict (`.pt`, or torchvision's own
//! `resnet18.pth`) and the inputs and outputs (`.safetensors`) under `tests/fixtures/parity/`. Here
//! the weights go into the burn modules through the PyTorch import a user takes (`PytorchStore`),
//! and outputs, BatchNorm running statistics, losses, gradients and one Adam step are compared.
//!
//! Error measure: max |ours − PyTorch| / max |PyTorch| over the tensor (a scale-relative error; an
//! element-wise relative error is meaningless near zero). Tolerance 1e-4 in fp32. Each test prints
//! its errors (`cargo test --test parity -- --nocapture`).

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::{Device, Int, Tensor, TensorData};
use opencarbon::checked::Params;
use opencarbon::model::aggregate_attention::AggregateAttention;
use opencarbon::model::batch_norm::BatchNorm;
use opencarbon::model::config::{ChannelOrder, ImageEncoderConfig};
use opencarbon::model::image_encoder::ImageEncoder;
use opencarbon::model::neighbourhood_cnn::NeighbourhoodCnn;
use opencarbon::model::poi_encoder::PoiEncoder;
use opencarbon::model::regressor::Regressor;
use opencarbon::model::se::SqueezeExcitation;
use opencarbon::model::token_attention::TokenAttention;
use opencarbon::model::{BatchLayout, InputShapes, Modality, ModelConfig, TileBatch};
use opencarbon::train::config::{ContrastiveConfig, ContrastiveDirection, Similarity, TrainConfig};
use opencarbon::train::loss::{info_nce, l1_sum};
use safetensors::SafeTensors;

const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// A fixture's tensors as (shape, f32 values); u8 and i64 tensors are converted.
struct Fixture(HashMap<String, (Vec<usize>, Vec<f32>)>);

impl Fixture {
    fn read(name: &str) -> Self {
        let bytes = std::fs::read(fixture(&format!("{name}.safetensors"))).expect("fixture file");
        let st = SafeTensors::deserialize(&bytes).expect("safetensors");
        let mut map = HashMap::new();
        for (key, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                safetensors::Dtype::U8 => data.iter().map(|&v| v as f32).collect(),
                safetensors::Dtype::I64 => data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                other => panic!("{name}: {key} has dtype {other:?}"),
            };
            map.insert(key.to_string(), (view.shape().to_vec(), values));
        }
        Self(map)
    }

    fn get(&self, key: &str) -> &(Vec<usize>, Vec<f32>) {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("fixture has no tensor `{key}`"))
    }

    fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.get(key);
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
    }

    fn values(&self, key: &str) -> &[f32] {
        &self.get(key).1
    }
}

/// max |ours − theirs| / max |theirs|.
fn relative_error(ours: &[f32], theirs: &[f32]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "lengths differ");
    let scale = theirs.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

fn check(what: &str, ours: &[f32], theirs: &[f32]) -> f64 {
    let e = relative_error(ours, theirs);
    println!("parity {what}: max relative error {e:.2e}");
    assert!(
        e <= TOLERANCE,
        "{what}: relative error {e:.3e} > {TOLERANCE:.0e}"
    );
    e
}

fn load<M: ModuleSnapshot>(module: &mut M, file: &str) {
    let mut store = PytorchStore::from_file(fixture(file));
    module
        .load_from(&mut store)
        .unwrap_or_else(|e| panic!("loading {file}: {e}"));
}

fn device() -> Device {
    common::device()
}

/// The running statistics of a BatchNorm against the fixture's `after.<name>.running_*`.
fn check_running(what: &str, bn: &BatchNorm, f: &Fixture, name: &str) {
    check(
        &format!("{what} {name}.running_mean"),
        &values(bn.running_mean.value_sync()),
        f.values(&format!("after.{name}.running_mean")),
    );
    check(
        &format!("{what} {name}.running_var"),
        &values(bn.running_var.value_sync()),
        f.values(&format!("after.{name}.running_var")),
    );
}

#[test]
fn squeeze_excitation() {
    let d = device();
    let f = Fixture::read("se");
    let mut se = SqueezeExcitation::new(32, &d);
    load(&mut se, "se.pt");
    check(
        "SE",
        &values(se.forward(f.tensor("input", &d))),
        f.values("output"),
    );
}

fn poi_encoder(name: &str, se: bool) {
    let d = device();
    let f = Fixture::read(name);
    let inputs = Fixture::read("poi_encoder"); // both encoders read one input
    let input =
        |device: &Device| inputs.tensor::<4>("input_u8", device) * inputs.values("scale")[0];
    let mut enc = PoiEncoder::new(3, 256, 32, se, &d);
    load(&mut enc, &format!("{name}.pt"));
    check(
        &format!("{name} eval"),
        &values(enc.forward(input(&d))),
        f.values("eval"),
    );
    // Train mode: batch statistics, and PyTorch's running-statistics update.
    let ad = d.clone().autodiff();
    let mut enc = PoiEncoder::new(3, 256, 32, se, &ad);
    load(&mut enc, &format!("{name}.pt"));
    check(
        &format!("{name} train"),
        &values(enc.forward(input(&ad))),
        f.values("train"),
    );
    check_running(name, &enc.bn1, &f, "bn1");
    check_running(name, &enc.bn2, &f, "bn2");
}

#[test]
fn poi_encoder_with_se() {
    poi_encoder("poi_encoder", true);
}

#[test]
fn poi_encoder_without_se() {
    poi_encoder("poi_encoder_no_se", false);
}

fn rgb_as_given() -> ImageEncoderConfig {
    ImageEncoderConfig {
        channel_order: ChannelOrder::Rgb,
        ..Default::default()
    }
}

/// torchvision's own `resnet18()` state dict, loaded as `model.image_encoder.pretrained` does:
/// the 512-wide features before `fc` match, in eval and train mode, with the running statistics.
#[test]
fn torchvision_resnet18_loads_and_matches_before_fc() {
    let d = device();
    let f = Fixture::read("resnet18");
    let path = fixture("resnet18.pth");
    let mut enc = ImageEncoder::new(32, rgb_as_given(), &d);
    enc.load_torchvision(&path).unwrap();
    let x = f.tensor::<4>("input_u8", &d);
    check(
        "ResNet-18 eval (features before fc)",
        &values(enc.features(x)),
        f.values("eval"),
    );
    let ad = d.clone().autodiff();
    let mut enc = ImageEncoder::new(32, rgb_as_given(), &ad);
    enc.load_torchvision(&path).unwrap();
    let x = f.tensor::<4>("input_u8", &ad);
    check(
        "ResNet-18 train (features before fc)",
        &values(enc.features(x)),
        f.values("train"),
    );
    check_running("ResNet-18", &enc.bn1, &f, "bn1");
    check_running("ResNet-18", &enc.layer4[1].bn2, &f, "layer4.1.bn2");
    let ds = &enc.layer2[0].downsample.as_ref().unwrap().bn;
    check_running("ResNet-18", ds, &f, "layer2.0.downsample.1");
}

#[test]
fn pretrained_from_the_spec_loads_into_the_network() {
    let d = device();
    let mut config = ModelConfig::default();
    config.image_encoder.pretrained = Some(fixture("resnet18.pth"));
    let shapes = InputShapes {
        image_size: Some(64),
        poi: Some((3, 64)),
        tabular: None,
    };
    let model = config
        .clone()
        .checked()
        .unwrap()
        .init_seeded(&shapes, &d, 1)
        .unwrap();
    let mut reference = ImageEncoder::new(32, Default::default(), &d);
    reference
        .load_torchvision(&fixture("resnet18.pth"))
        .unwrap();
    let conv = |e: &ImageEncoder| values(e.layer3[1].conv2.weight.val());
    assert_eq!(conv(model.image.as_ref().unwrap()), conv(&reference));

    // A missing file is refused before anything is built, naming the key.
    config.image_encoder.pretrained = Some("no/such/resnet18.pth".into());
    let problems = config.problems().join("\n");
    assert!(
        problems.contains("model.image_encoder.pretrained")
            && problems.contains("no/such/resnet18.pth"),
        "{problems}"
    );
    // A file that is not a ResNet-18 names the file and what is missing.
    let mut enc = ImageEncoder::new(32, Default::default(), &d);
    let e = format!(
        "{:#}",
        enc.load_torchvision(&fixture("regressor.pt")).unwrap_err()
    );
    assert!(e.contains("regressor.pt") && e.contains("lacks"), "{e}");
}

#[test]
fn aggregate_attention() {
    let d = device();
    let f = Fixture::read("aggregate_attention");
    let mut agg = AggregateAttention::new(32, 32, &d);
    load(&mut agg, "aggregate_attention.pt");
    let (fused, beta) = agg.forward(f.tensor("input", &d));
    check(
        "aggregate-attention fused",
        &values(fused),
        f.values("fused"),
    );
    check("aggregate-attention β", &values(beta), f.values("beta"));
}

#[test]
fn token_attention() {
    let d = device();
    let f = Fixture::read("token_attention");
    let mut att = TokenAttention::new(2, &d);
    load(&mut att, "token_attention.pt");
    let (q, c) = (f.tensor::<2>("query", &d), f.tensor::<2>("context", &d));
    check(
        "token attention (cross)",
        &values(att.forward(q.clone(), c)),
        f.values("output"),
    );
    check(
        "token attention (self)",
        &values(att.self_attention(q)),
        f.values("self"),
    );
}

#[test]
fn neighbourhood_cnn() {
    let d = device();
    let f = Fixture::read("neighbourhood_cnn");
    let mut cnn = NeighbourhoodCnn::new(32, &d);
    load(&mut cnn, "neighbourhood_cnn.pt");
    check(
        "neighbourhood CNN",
        &values(cnn.forward(f.tensor("input", &d))),
        f.values("output"),
    );
}

#[test]
fn regressor_eval_train_and_running_statistics() {
    let d = device();
    let f = Fixture::read("regressor");
    let mut reg = Regressor::new(64, 32, &d);
    load(&mut reg, "regressor.pt");
    check(
        "regressor eval",
        &values(reg.forward(f.tensor("input", &d))),
        f.values("eval"),
    );
    let ad = d.clone().autodiff();
    let mut reg = Regressor::new(64, 32, &ad);
    load(&mut reg, "regressor.pt");
    check(
        "regressor train",
        &values(reg.forward(f.tensor("input", &ad))),
        f.values("train"),
    );
    // BatchNorm1d over 6 samples: PyTorch folds the unbiased variance (× 6/5) into running_var.
    check_running("regressor", &reg.bn, &f, "bn");
}

/// The legacy (pre-1.6, non-zip) checkpoint format of `resnet18-5c106cde.pth` loads the same.
#[test]
fn legacy_checkpoint_format_loads_the_same() {
    let d = device();
    let f = Fixture::read("regressor");
    let mut reg = Regressor::new(64, 32, &d);
    load(&mut reg, "regressor_legacy.pt");
    check(
        "regressor from a legacy .pt",
        &values(reg.forward(f.tensor("input", &d))),
        f.values("eval"),
    );
}

/// burn's own BatchNorm (which `model::batch_norm` replaces) folds the biased variance into
/// `running_var`; PyTorch the unbiased one. Pinned here so the documented difference stays true.
#[test]
fn burn_batchnorm_differs_from_pytorch_by_the_bias_factor() {
    let d = device();
    let f = Fixture::read("regressor");
    let ad = d.clone().autodiff();
    let mut reg = Regressor::new(64, 32, &ad);
    load(&mut reg, "regressor.pt");
    let h: Tensor<2> = burn::tensor::activation::relu(reg.fc1.forward(f.tensor::<2>("input", &ad)));
    let mut bn = burn::nn::BatchNormConfig::new(32).init(&ad);
    bn.running_var = burn::module::RunningState::new(reg.bn.running_var.value());
    let before = values(reg.bn.running_var.value());
    bn.forward(h);
    let _ = bn.running_var.value_sync();
    let (n, m) = (6.0f64, 0.1f64);
    // torch: rv' = (1−m)·rv + m·var·n/(n−1); burn: rv' = (1−m)·rv + m·var.
    let expected: Vec<f32> = f
        .values("after.bn.running_var")
        .iter()
        .zip(&before)
        .map(|(&torch, &rv)| {
            let var = (torch as f64 - (1.0 - m) * rv as f64) / m * (n - 1.0) / n;
            ((1.0 - m) * rv as f64 + m * var) as f32
        })
        .collect();
    check(
        "burn BatchNorm running_var (biased update)",
        &values(bn.running_var.value_sync()),
        &expected,
    );
    let gap = relative_error(
        &values(bn.running_var.value_sync()),
        f.values("after.bn.running_var"),
    );
    assert!(
        gap > 1e-3,
        "burn's update should differ from PyTorch's (gap {gap:.2e})"
    );
}

#[test]
fn losses() {
    let d = device();
    let f = Fixture::read("losses");
    let (a, b) = (f.tensor::<2>("a", &d), f.tensor::<2>("b", &d));
    let l1 = l1_sum(f.tensor("prediction", &d), f.tensor("target", &d));
    check("L1-sum", &values(l1), f.values("l1_sum"));
    let cases = [
        (
            "info_nce",
            ContrastiveDirection::AToB,
            Similarity::Dot,
            0.07,
        ),
        (
            "info_nce_symmetric",
            ContrastiveDirection::Symmetric,
            Similarity::Dot,
            0.07,
        ),
        (
            "info_nce_cosine",
            ContrastiveDirection::AToB,
            Similarity::Cosine,
            0.07,
        ),
        (
            "info_nce_tau_0_5",
            ContrastiveDirection::AToB,
            Similarity::Dot,
            0.5,
        ),
    ];
    for (key, direction, similarity, temperature) in cases {
        let config = ContrastiveConfig {
            pair: [Modality::Image, Modality::Poi],
            direction,
            similarity,
            temperature,
        };
        check(
            key,
            &values(info_nce(a.clone(), b.clone(), &config)),
            f.values(key),
        );
    }
}

/// Every float parameter (or its gradient) by its module path.
struct ByPath<'a> {
    grads: Option<&'a burn::tensor::Gradients>,
    path: Vec<String>,
    out: HashMap<String, Vec<f32>>,
}

impl<'a> ByPath<'a> {
    fn new(grads: Option<&'a burn::tensor::Gradients>) -> Self {
        Self {
            grads,
            path: Vec::new(),
            out: HashMap::new(),
        }
    }
}

impl ModuleVisitor for ByPath<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let value = match self.grads {
            Some(g) => match tensor.grad(g) {
                Some(grad) => values(grad),
                None => return,
            },
            None => values(tensor),
        };
        self.out.insert(self.path.join("."), value);
    }
}

fn network_config() -> (ModelConfig, InputShapes) {
    let config = ModelConfig {
        image_encoder: rgb_as_given(),
        ..Default::default()
    };
    let shapes = InputShapes {
        image_size: Some(64),
        poi: Some((3, 64)),
        tabular: None,
    };
    (config, shapes)
}

fn network_inputs(f: &Fixture, device: &Device) -> (TileBatch, BatchLayout) {
    let ints = |key: &str| {
        let v: Vec<i64> = f.values(key).iter().map(|&x| x as i64).collect();
        let n = v.len();
        Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
    };
    (
        TileBatch {
            image: Some(f.tensor("image_u8", device)),
            poi: Some(f.tensor("poi_u8", device)),
            tabular: None,
        },
        BatchLayout {
            batch_size: f.values("centre").len(),
            centre: ints("centre"),
            window: Some(ints("window")),
            encode_chunks: 1,
        },
    )
}

/// `model.initial_weights` starts a run from a whole-network state dict: the same eval output as
/// the fixture loaded by hand, whatever the seed; a state dict of another module is refused by name.
#[test]
fn initial_weights_load_the_whole_network() {
    let d = device();
    let f = Fixture::read("network");
    let (config, shapes) = network_config();
    let config = ModelConfig {
        initial_weights: Some(fixture("network.pt")),
        ..config
    }
    .checked()
    .unwrap();
    for seed in [1, 2] {
        let model = config.init_seeded(&shapes, &d, seed).unwrap();
        let (tiles, layout) = network_inputs(&f, &d);
        check(
            "network eval from initial_weights",
            &values(model.forward(tiles, &layout).prediction),
            f.values("eval"),
        );
    }
    let wrong = ModelConfig {
        initial_weights: Some(fixture("regressor.pt")),
        ..config.into_inner()
    }
    .checked()
    .unwrap();
    let e = format!("{:#}", wrong.init_seeded(&shapes, &d, 1).err().unwrap());
    assert!(
        e.contains("regressor.pt") && e.contains("initial_weights"),
        "{e}"
    );
}

/// The whole network with neighbourhoods: forward in eval and train mode, then one training
/// step (L1-sum + α·InfoNCE, Adam with coupled weight decay): loss, gradients, parameters after.
#[test]
fn full_network_forward_and_one_adam_step() {
    let d = device();
    let f = Fixture::read("network");
    let (config, shapes) = network_config();
    let config = config.checked().unwrap();
    let mut model = config.init(&shapes, &d).unwrap();
    load(&mut model, "network.pt");
    let (tiles, layout) = network_inputs(&f, &d);
    check(
        "network eval",
        &values(model.forward(tiles, &layout).prediction),
        f.values("eval"),
    );

    let ad = d.clone().autodiff();
    let mut model = config.init(&shapes, &ad).unwrap();
    load(&mut model, "network.pt");
    let (tiles, layout) = network_inputs(&f, &ad);
    let output = model.forward(tiles, &layout);
    check(
        "network train",
        &values(output.prediction.clone()),
        f.values("train"),
    );
    let l1 = l1_sum(output.prediction.clone(), f.tensor("target", &ad));
    let nce = info_nce(
        output.embedding(Modality::Image).unwrap(),
        output.embedding(Modality::Poi).unwrap(),
        &ContrastiveConfig::default(),
    );
    let loss = l1.clone() + nce.clone() * 0.001;
    check("network L1-sum", &values(l1), f.values("l1"));
    check("network InfoNCE", &values(nce), f.values("info_nce"));
    check("network loss", &values(loss.clone()), f.values("loss"));

    let grads = loss.backward();
    let mut by_path = ByPath::new(Some(&grads));
    model.visit(&mut by_path);
    // Gradients are judged against the exact (float64) answer, next to PyTorch's float32 one: a
    // train-mode BatchNorm over near-constant channels makes some of them ill-conditioned, so
    // two float32 codes can differ there by more than 1e-4 while both are as exact as float32
    // allows. A gradient whose exact value is ~0 (a bias cancelled by the next BatchNorm's mean)
    // is measured against 1 % of the network's largest gradient instead of its own scale.
    let grad_keys: Vec<&String> = f.0.keys().filter(|k| k.starts_with("grad.")).collect();
    let network_scale = grad_keys
        .iter()
        .flat_map(|k| f.values(&k.replace("grad.", "grad64.")).iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    let error = |ours: &[f32], exact: &[f32]| {
        let scale = exact
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(0.01 * network_scale) as f64;
        let diff = ours
            .iter()
            .zip(exact)
            .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
        diff / scale
    };
    let (mut worst_ours, mut worst_torch, mut within) = ((0.0, String::new()), 0f64, 0);
    let mut worst_ratio = 0f64;
    let mut torch_within = 0;
    for key in &grad_keys {
        let path = key.trim_start_matches("grad.");
        let ours = burn_path(path, &by_path.out);
        // Linear weights are [in, out] in burn, [out, in] in PyTorch.
        let exact = transposed_if_linear(&f, &format!("grad64.{path}"), ours.len());
        let torch = transposed_if_linear(&f, key, ours.len());
        let (e_ours, e_torch) = (error(ours, &exact), error(&torch, &exact));
        // A wrong formula shows as an error of order 1; float32 rounding on an ill-conditioned
        // gradient as one of the order of PyTorch's own (measured: at most 5× it here).
        assert!(
            e_ours <= TOLERANCE.max(10.0 * e_torch),
            "grad {path}: error {e_ours:.3e} against float64, PyTorch float32's is {e_torch:.3e}"
        );
        worst_ratio = worst_ratio.max(e_ours / e_torch.max(TOLERANCE));
        within += usize::from(e_ours <= TOLERANCE);
        torch_within += usize::from(e_torch <= TOLERANCE);
        if e_ours > worst_ours.0 {
            worst_ours = (e_ours, path.to_string());
        }
        worst_torch = worst_torch.max(e_torch);
    }
    println!(
        "parity gradients vs float64: {} tensors; within {TOLERANCE:.0e}: ours {within}, PyTorch float32 {torch_within}; worst ours {:.2e} ({}), worst PyTorch float32 {worst_torch:.2e}; worst ratio ours/PyTorch {worst_ratio:.1}",
        grad_keys.len(),
        worst_ours.0,
        worst_ours.1
    );
    assert!(
        within + 2 >= torch_within,
        "fewer gradients within {TOLERANCE:.0e} than PyTorch float32 ({within} vs {torch_within})"
    );

    let train = TrainConfig {
        lr: 1e-3,
        weight_decay: 5e-3,
        adam_epsilon: 1e-8,
        ..Default::default()
    };
    // The step itself, given the exact gradients: Adam's first update is ≈ ±lr·sign(g + λp), so a
    // float32 gradient that rounding pushes across zero would flip it; feeding both optimisers the
    // same gradients isolates the update rule.
    let mut exact = ExactGrads {
        fixture: &f,
        path: Vec::new(),
        grads: burn::optim::GradientsParams::new(),
        device: d.clone(),
    };
    model.visit(&mut exact);
    drop(grads);
    let mut optimizer = opencarbon::train::trainer::optimizer(&train);
    let model = optimizer.step(train.lr, model, exact.grads);
    let mut after = ByPath::new(None);
    model.visit(&mut after);
    let after_keys: Vec<&String> = f.0.keys().filter(|k| k.starts_with("after64.")).collect();
    let mut worst = (0.0, String::new());
    for key in &after_keys {
        let path = key.trim_start_matches("after64.");
        let ours = burn_path(path, &after.out);
        let exact = transposed_if_linear(&f, key, ours.len());
        let e = relative_error(ours, &exact);
        assert!(
            e <= TOLERANCE,
            "after Adam {path}: relative error {e:.3e} > {TOLERANCE:.0e}"
        );
        if e > worst.0 {
            worst = (e, path.to_string());
        }
    }
    assert!(
        after_keys.len() > 50,
        "only {} parameters compared",
        after_keys.len()
    );
    println!(
        "parity after one Adam step (vs float64): {} tensors, max relative error {:.2e} ({})",
        after_keys.len(),
        worst.0,
        worst.1
    );
    // BatchNorm running statistics after the train-mode forward.
    let head_bn = &model.head.bn;
    check(
        "network head.bn.running_var",
        &values(head_bn.running_var.value_sync()),
        f.values("bn_after.head.bn.running_var"),
    );
    let poi_bn = &model.poi.as_ref().unwrap().bn2;
    check(
        "network poi.bn2.running_var",
        &values(poi_bn.running_var.value_sync()),
        f.values("bn_after.poi.bn2.running_var"),
    );
}

/// The fixture's float64 gradients, registered for the parameters it has them for.
struct ExactGrads<'a> {
    fixture: &'a Fixture,
    path: Vec<String>,
    grads: burn::optim::GradientsParams,
    device: Device,
}

impl ModuleVisitor for ExactGrads<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let ours = self.path.join(".");
        let pytorch = ours.replace(".gamma", ".weight").replace(".beta", ".bias");
        let key = format!("grad64.{pytorch}");
        if !self.fixture.0.contains_key(&key) {
            return;
        }
        let dims = param.val().dims();
        let n = dims.iter().product();
        let values = transposed_if_linear(self.fixture, &key, n);
        let grad = Tensor::<D>::from_data(TensorData::new(values, dims.to_vec()), &self.device);
        self.grads.register(param.id, grad);
    }
}

/// Our module path for a PyTorch key: BatchNorm's weight and bias are burn's gamma and beta.
fn burn_path<'a>(pytorch: &str, ours: &'a HashMap<String, Vec<f32>>) -> &'a Vec<f32> {
    let candidates = [
        pytorch.to_string(),
        pytorch.replace(".weight", ".gamma"),
        pytorch.replace(".bias", ".beta"),
    ];
    candidates
        .iter()
        .find_map(|c| ours.get(c))
        .unwrap_or_else(|| {
            let mut known: Vec<&String> = ours.keys().collect();
            known.sort();
            panic!("no parameter for PyTorch key {pytorch}; ours: {known:?}")
        })
}

/// A PyTorch Linear weight [out, in] as burn's [in, out] (other tensors unchanged).
fn transposed_if_linear(f: &Fixture, key: &str, len: usize) -> Vec<f32> {
    let (shape, v) = f.get(key);
    assert_eq!(v.len(), len, "{key}: sizes differ");
    let is_linear_weight = shape.len() == 2 && key.ends_with(".weight");
    if !is_linear_weight {
        return v.clone();
    }
    let (rows, cols) = (shape[0], shape[1]);
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}
