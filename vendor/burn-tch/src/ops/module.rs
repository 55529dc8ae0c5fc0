use crate::{IntoKind, LibTorch, TchTensor};
use burn_backend::{
    IntDType, TensorMetadata,
    ops::{
        AttentionModuleOptions, BatchNormTrain, BatchNormTrainBackward, ConvOptions,
        ConvTransposeOptions, DeformConv2dBackward, DeformConvOptions, InterpolateMode,
        InterpolateOptions, MaxPool1dWithIndices, MaxPool2dBackward, MaxPool2dWithIndices,
        ModuleOps, attention::attention_fallback, conv::pad_asymmetric_conv_input,
    },
    tensor::{FloatTensor, IntTensor},
};

impl ModuleOps<Self> for LibTorch {
    fn embedding(weights: TchTensor, indices: TchTensor) -> TchTensor {
        // Workaround for MPS "Placeholder storage has not been allocated" error.
        // See: https://github.com/pytorch/pytorch/issues/123995
        // MPS uses lazy allocation and the embedding operation (which uses index_select)
        // can fail if the tensors haven't been materialized yet.
        // We work around this by performing the embedding on CPU and transferring back to MPS.
        if matches!(weights.tensor.device(), tch::Device::Mps) {
            let cpu_weights = weights.tensor.to(tch::Device::Cpu);
            let cpu_indices = indices.tensor.to(tch::Device::Cpu);
            let result = tch::Tensor::embedding(&cpu_weights, &cpu_indices, -1, false, false)
                .to(tch::Device::Mps);
            return TchTensor::new(result);
        }

        let tensor = tch::Tensor::embedding(&weights.tensor, &indices.tensor, -1, false, false);
        TchTensor::new(tensor)
    }

    fn embedding_backward(weights: TchTensor, output: TchTensor, indices: TchTensor) -> TchTensor {
        let [n_embedding, _d_model] = weights.shape().dims();

        // Workaround for MPS "Placeholder storage has not been allocated" error.
        // See: https://github.com/pytorch/pytorch/issues/123995
        if matches!(output.tensor.device(), tch::Device::Mps) {
            let cpu_output = output.tensor.to(tch::Device::Cpu);
            let cpu_indices = indices.tensor.to(tch::Device::Cpu);
            let result = tch::Tensor::embedding_backward(
                &cpu_output,
                &cpu_indices,
                n_embedding as i64,
                -1,
                false,
                false,
            )
            .to(tch::Device::Mps);
            return TchTensor::new(result);
        }

        let tensor = tch::Tensor::embedding_backward(
            &output.tensor,
            &indices.tensor,
            n_embedding as i64,
            -1,
            false,
            false,
        );

        TchTensor::new(tensor)
    }

    fn conv1d(
        x: TchTensor,
        weight: TchTensor,
        bias: Option<TchTensor>,
        options: ConvOptions<1>,
    ) -> TchTensor {
        let (x, options) = pad_asymmetric_conv_input::<LibTorch, 1>(x, options);
        let tensor = tch::Tensor::conv1d(
            &x.tensor,
            &weight.tensor,
            bias.map(|t| t.tensor),
            options.stride.map(|i| i as i64),
            options.padding_begin().map(|i| i as i64),
            options.dilation.map(|i| i as i64),
            options.groups as i64,
        );

        TchTensor::new(tensor)
    }

    fn conv2d(
        x: TchTensor,
        weight: TchTensor,
        bias: Option<TchTensor>,
        options: ConvOptions<2>,
    ) -> TchTensor {
        let (x, options) = pad_asymmetric_conv_input::<LibTorch, 2>(x, options);
        let tensor = tch::Tensor::conv2d(
            &x.tensor,
            &weight.tensor,
            bias.map(|t| t.tensor),
            options.stride.map(|i| i as i64),
            options.padding_begin().map(|i| i as i64),
            options.dilation.map(|i| i as i64),
            options.groups as i64,
        );

        TchTensor::new(tensor)
    }

    // OpenCarbon-rs patch: a convolution's gradients come from libtorch's own
    // `convolution_backward` (cuDNN's backward-data and backward-filter kernels on CUDA) through
    // `crate::native`, instead of burn-backend's defaults: the weight gradient as a convolution of
    // the batch-transposed input with the batch-transposed output gradient (the output's spatial
    // extent as its kernel), which cuDNN runs ≈10× slower, and the input gradient as a transposed
    // convolution. `OPENCARBON_CONV_GRAD=burn` restores those; see `conv_grad_native`.
    fn conv2d_x_backward(
        x: TchTensor,
        weight: TchTensor,
        output_grad: TchTensor,
        options: ConvOptions<2>,
    ) -> TchTensor {
        if conv_grad_native() || options.is_asymmetric() {
            return native_conv2d_grad(&x, &weight, &output_grad, &options, ConvGrad::Input);
        }
        input_grad_by_transposed_convolution(&x, &weight, &output_grad, &options)
    }

    fn conv2d_weight_backward(
        x: TchTensor,
        weight: TchTensor,
        output_grad: TchTensor,
        options: ConvOptions<2>,
    ) -> TchTensor {
        if conv_grad_native() || options.groups != 1 || options.is_asymmetric() {
            return native_conv2d_grad(&x, &weight, &output_grad, &options, ConvGrad::Weight);
        }
        weight_grad_by_convolution(&x, &weight, &output_grad, &options)
    }

    // OpenCarbon-rs patch: BatchNorm through libtorch's fused kernels (`native_batch_norm` and
    // its backward) instead of burn-backend's composite defaults, which copy the input through
    // swap_dims + reshape for each statistic and build the backward from ~10 element-wise and
    // reduction ops. `OPENCARBON_TCH_BATCH_NORM=burn` restores those; see `native_batch_norm`.
    fn batch_norm(
        x: TchTensor,
        gamma: TchTensor,
        beta: TchTensor,
        mean: TchTensor,
        variance: TchTensor,
        epsilon: f64,
    ) -> TchTensor {
        if !native_batch_norm() {
            return TchTensor::new(bn_reference::inference(
                &x.tensor,
                &gamma.tensor,
                &beta.tensor,
                &mean.tensor,
                &variance.tensor,
                epsilon,
            ));
        }
        TchTensor::new(x.tensor.batch_norm(
            Some(&gamma.tensor),
            Some(&beta.tensor),
            Some(&mean.tensor),
            Some(&variance.tensor),
            false,
            0.0,
            epsilon,
            true,
        ))
    }

    fn batch_norm_train(
        x: TchTensor,
        gamma: TchTensor,
        beta: TchTensor,
        epsilon: f64,
    ) -> BatchNormTrain<Self> {
        let (output, mean, variance) = if native_batch_norm() {
            // One kernel for the statistics and the normalisation (what PyTorch's train-mode
            // BatchNorm runs); burn wants the biased variance, recovered from 1/√(var + ε).
            let (output, mean, invstd) = x.tensor.native_batch_norm(
                Some(&gamma.tensor),
                Some(&beta.tensor),
                None::<&tch::Tensor>,
                None::<&tch::Tensor>,
                true,
                0.0,
                epsilon,
            );
            // Clamped: for a constant channel, rounding can leave (var + ε) − ε a hair below 0.
            let variance = (invstd.square().reciprocal() - epsilon).clamp_min(0.0);
            (output, mean, variance)
        } else {
            bn_reference::train(&x.tensor, &gamma.tensor, &beta.tensor, epsilon)
        };
        BatchNormTrain::new(
            TchTensor::new(output),
            TchTensor::new(mean),
            TchTensor::new(variance),
        )
    }

    fn batch_norm_train_backward(
        x: TchTensor,
        gamma: TchTensor,
        mean: TchTensor,
        variance: TchTensor,
        epsilon: f64,
        output_grad: TchTensor,
    ) -> BatchNormTrainBackward<Self> {
        let (x_grad, gamma_grad, beta_grad) = if native_batch_norm() {
            // `native_batch_norm_backward`: all three gradients in one kernel, from the batch
            // statistics burn kept (mean and biased variance).
            let invstd = (&variance.tensor + epsilon).rsqrt();
            crate::native::batch_norm_backward(
                &output_grad.tensor,
                &x.tensor,
                &gamma.tensor,
                &mean.tensor,
                &invstd,
                epsilon,
            )
            .unwrap_or_else(|error| panic!("batch norm backward: {error}"))
        } else {
            bn_reference::backward(
                &x.tensor,
                &gamma.tensor,
                &mean.tensor,
                &variance.tensor,
                epsilon,
                &output_grad.tensor,
            )
        };
        BatchNormTrainBackward::new(
            TchTensor::new(x_grad),
            TchTensor::new(gamma_grad),
            TchTensor::new(beta_grad),
        )
    }

    fn conv3d(
        x: TchTensor,
        weight: TchTensor,
        bias: Option<TchTensor>,
        options: ConvOptions<3>,
    ) -> TchTensor {
        let tensor = tch::Tensor::conv3d(
            &x.tensor,
            &weight.tensor,
            bias.map(|t| t.tensor),
            options.stride.map(|i| i as i64),
            options.padding_begin().map(|i| i as i64),
            options.dilation.map(|i| i as i64),
            options.groups as i64,
        );

        TchTensor::new(tensor)
    }

    fn deform_conv2d(
        _x: TchTensor,
        _offset: TchTensor,
        _weight: TchTensor,
        _mask: Option<TchTensor>,
        _bias: Option<TchTensor>,
        _options: DeformConvOptions<2>,
    ) -> TchTensor {
        unimplemented!("Torch bindings don't support deform_conv2d");
    }

    fn deform_conv2d_backward(
        _x: TchTensor,
        _offset: TchTensor,
        _weight: TchTensor,
        _mask: Option<TchTensor>,
        _bias: Option<TchTensor>,
        _out_grad: TchTensor,
        _options: DeformConvOptions<2>,
    ) -> DeformConv2dBackward<Self> {
        unimplemented!("Torch bindings don't support deform_conv2d");
    }

    fn conv_transpose1d(
        x: TchTensor,
        weight: TchTensor,
        bias: Option<TchTensor>,
        options: ConvTransposeOptions<1>,
    ) -> TchTensor {
        let tensor = tch::Tensor::conv_transpose1d(
            &x.tensor,
            &weight.tensor,
            bias.map(|t| t.tensor),
            options.stride.map(|i| i as i64),
            options.padding.map(|i| i as i64),
            options.padding_out.map(|i| i as i64),
            options.groups as i64,
            options.dilation.map(|i| i as i64),
        );

        TchTensor::new(tensor)
    }

    fn conv_transpose2d(
        x: TchTensor,
        weight: TchTensor,
        bias: Option<TchTensor>,
        options: ConvTransposeOptions<2>,
    ) -> TchTensor {
        let tensor = tch::Tensor::conv_transpose2d(
            &x.tensor,
            &weight.tensor,
            bias.map(|t| t.tensor),
            options.stride.map(|i| i as i64),
            options.padding.map(|i| i as i64),
            options.padding_out.map(|i| i as i64),
            options.groups as i64,
            options.dilation.map(|i| i as i64),
        );

        TchTensor::new(tensor)
    }

    fn conv_transpose3d(
        x: TchTensor,
        weight: TchTensor,
        bias: Option<TchTensor>,
        options: ConvTransposeOptions<3>,
    ) -> TchTensor {
        let tensor = tch::Tensor::conv_transpose3d(
            &x.tensor,
            &weight.tensor,
            bias.map(|t| t.tensor),
            options.stride.map(|i| i as i64),
            options.padding.map(|i| i as i64),
            options.padding_out.map(|i| i as i64),
            options.groups as i64,
            options.dilation.map(|i| i as i64),
        );

        TchTensor::new(tensor)
    }

    fn avg_pool1d(
        x: TchTensor,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        count_include_pad: bool,
        ceil_mode: bool,
    ) -> TchTensor {
        let tensor = tch::Tensor::avg_pool1d(
            &x.tensor,
            [kernel_size as i64],
            [stride as i64],
            [padding as i64],
            ceil_mode,
            count_include_pad,
        );

        TchTensor::new(tensor)
    }
    fn avg_pool2d(
        x: TchTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
        ceil_mode: bool,
    ) -> TchTensor {
        let tensor = tch::Tensor::avg_pool2d(
            &x.tensor,
            [kernel_size[0] as i64, kernel_size[1] as i64],
            [stride[0] as i64, stride[1] as i64],
            [padding[0] as i64, padding[1] as i64],
            ceil_mode,
            count_include_pad,
            None,
        );

        TchTensor::new(tensor)
    }

    fn avg_pool2d_backward(
        x: TchTensor,
        grad: TchTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
        ceil_mode: bool,
    ) -> TchTensor {
        let tensor = tch::Tensor::avg_pool2d_backward(
            &x.tensor,
            &grad.tensor,
            [kernel_size[0] as i64, kernel_size[1] as i64],
            [stride[0] as i64, stride[1] as i64],
            [padding[0] as i64, padding[1] as i64],
            ceil_mode,
            count_include_pad,
            None,
        );

        TchTensor::new(tensor)
    }

    fn max_pool1d(
        x: TchTensor,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        ceil_mode: bool,
    ) -> TchTensor {
        let tensor = tch::Tensor::max_pool1d(
            &x.tensor,
            kernel_size as i64,
            stride as i64,
            padding as i64,
            dilation as i64,
            ceil_mode,
        );

        TchTensor::new(tensor)
    }

    fn max_pool1d_with_indices(
        x: TchTensor,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        ceil_mode: bool,
        indices_dtype: IntDType,
    ) -> MaxPool1dWithIndices<Self> {
        let (tensor, indices) = tch::Tensor::max_pool1d_with_indices(
            &x.tensor,
            kernel_size as i64,
            stride as i64,
            padding as i64,
            dilation as i64,
            ceil_mode,
        );

        MaxPool1dWithIndices::new(
            TchTensor::new(tensor),
            TchTensor::new(indices.to_kind(indices_dtype.into_kind())),
        )
    }

    fn max_pool2d(
        x: TchTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> TchTensor {
        let tensor = tch::Tensor::max_pool2d(
            &x.tensor,
            [kernel_size[0] as i64, kernel_size[1] as i64],
            [stride[0] as i64, stride[1] as i64],
            [padding[0] as i64, padding[1] as i64],
            [dilation[0] as i64, dilation[1] as i64],
            ceil_mode,
        );

        TchTensor::new(tensor)
    }

    fn max_pool2d_with_indices(
        x: TchTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
        indices_dtype: IntDType,
    ) -> MaxPool2dWithIndices<Self> {
        let (tensor, indices) = tch::Tensor::max_pool2d_with_indices(
            &x.tensor,
            [kernel_size[0] as i64, kernel_size[1] as i64],
            [stride[0] as i64, stride[1] as i64],
            [padding[0] as i64, padding[1] as i64],
            [dilation[0] as i64, dilation[1] as i64],
            ceil_mode,
        );

        MaxPool2dWithIndices::new(
            TchTensor::new(tensor),
            TchTensor::new(indices.to_kind(indices_dtype.into_kind())),
        )
    }

    fn max_pool2d_with_indices_backward(
        x: TchTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
        output_grad: TchTensor,
        indices: TchTensor,
    ) -> MaxPool2dBackward<Self> {
        let grad = tch::Tensor::max_pool2d_with_indices_backward(
            &x.tensor,
            &output_grad.tensor,
            [kernel_size[0] as i64, kernel_size[1] as i64],
            [stride[0] as i64, stride[1] as i64],
            [padding[0] as i64, padding[1] as i64],
            [dilation[0] as i64, dilation[1] as i64],
            ceil_mode,
            &indices.tensor,
        );

        MaxPool2dBackward::new(TchTensor::new(grad))
    }

    fn adaptive_avg_pool2d(x: TchTensor, output_size: [usize; 2]) -> TchTensor {
        let tensor = tch::Tensor::adaptive_avg_pool2d(&x.tensor, output_size.map(|e| e as i64));

        TchTensor::new(tensor)
    }

    fn adaptive_avg_pool2d_backward(x: TchTensor, grad: TchTensor) -> TchTensor {
        let tensor = tch::Tensor::internal_adaptive_avg_pool2d_backward(&x.tensor, &grad.tensor);

        TchTensor::new(tensor)
    }

    fn adaptive_avg_pool3d(x: TchTensor, output_size: [usize; 3]) -> TchTensor {
        let tensor = tch::Tensor::adaptive_avg_pool3d(&x.tensor, output_size.map(|e| e as i64));

        TchTensor::new(tensor)
    }

    fn adaptive_avg_pool3d_backward(x: TchTensor, grad: TchTensor) -> TchTensor {
        let tensor = tch::Tensor::internal_adaptive_avg_pool3d_backward(&x.tensor, &grad.tensor);

        TchTensor::new(tensor)
    }

    fn adaptive_avg_pool1d(x: TchTensor, output_size: usize) -> TchTensor {
        let tensor = tch::Tensor::adaptive_avg_pool1d(&x.tensor, output_size as i64);

        TchTensor::new(tensor)
    }

    fn interpolate(
        x: TchTensor,
        output_size: [usize; 2],
        options: InterpolateOptions,
    ) -> TchTensor {
        let output_size = output_size.map(|e| e as i64);

        let align_corners = options.align_corners;
        let tensor = match options.mode {
            InterpolateMode::Nearest => {
                tch::Tensor::upsample_nearest2d(&x.tensor, output_size, None, None)
            }
            InterpolateMode::NearestExact => {
                panic!("nearest exact interpolation is not supported by PyTorch/tch backend")
            }
            InterpolateMode::Bilinear => {
                tch::Tensor::upsample_bilinear2d(&x.tensor, output_size, align_corners, None, None)
            }
            InterpolateMode::Bicubic => {
                tch::Tensor::upsample_bicubic2d(&x.tensor, output_size, align_corners, None, None)
            }
            InterpolateMode::Lanczos3 => {
                panic!("lanczos3 interpolation is not supported by PyTorch/tch backend")
            }
        };

        TchTensor::new(tensor)
    }

    fn interpolate_backward(
        x: TchTensor,
        grad: TchTensor,
        output_size: [usize; 2],
        options: InterpolateOptions,
    ) -> TchTensor {
        let output_size = output_size.map(|e| e as i64);
        let [n, c, h_in, w_in] = x.shape().dims();
        let input_size = [n as i64, c as i64, h_in as i64, w_in as i64];
        let align_corners = options.align_corners;

        let tensor = match options.mode {
            InterpolateMode::Nearest => tch::Tensor::upsample_nearest2d_backward(
                &grad.tensor,
                output_size,
                input_size,
                None,
                None,
            ),
            InterpolateMode::NearestExact => {
                panic!(
                    "nearest exact interpolation backward is not supported by PyTorch/tch backend"
                )
            }
            InterpolateMode::Bilinear => tch::Tensor::upsample_bilinear2d_backward(
                &grad.tensor,
                output_size,
                input_size,
                align_corners,
                None,
                None,
            ),
            InterpolateMode::Bicubic => tch::Tensor::upsample_bicubic2d_backward(
                &grad.tensor,
                output_size,
                input_size,
                align_corners,
                None,
                None,
            ),
            InterpolateMode::Lanczos3 => {
                panic!("lanczos3 interpolation backward is not supported by PyTorch/tch backend")
            }
        };

        TchTensor::new(tensor)
    }

    fn attention(
        query: TchTensor,
        key: TchTensor,
        value: TchTensor,
        mask: Option<TchTensor>,
        attn_bias: Option<TchTensor>,
        options: AttentionModuleOptions,
    ) -> TchTensor {
        if attn_bias.is_some() {
            return attention_fallback::<Self>(query, key, value, mask, attn_bias, options);
        }

        TchTensor::new(tch::Tensor::scaled_dot_product_attention(
            &query.tensor,
            &key.tensor,
            &value.tensor,
            mask.map(|m| m.tensor),
            0.,
            options.is_causal,
            options.scale,
            false,
        ))
    }

    fn layer_norm(
        tensor: TchTensor,
        gamma: TchTensor,
        beta: Option<TchTensor>,
        epsilon: f64,
    ) -> TchTensor {
        let shape = tensor.shape();
        let last_dim = shape[shape.num_dims() - 1] as i64;

        let tensor = tensor.tensor.layer_norm(
            [last_dim],
            Some(&gamma.tensor),
            beta.as_ref().map(|b| &b.tensor),
            epsilon,
            true,
        );

        TchTensor::new(tensor)
    }

    fn has_ctc_loss_backward() -> bool {
        true
    }

    fn ctc_loss(
        log_probs: FloatTensor<Self>,
        targets: IntTensor<Self>,
        input_lengths: IntTensor<Self>,
        target_lengths: IntTensor<Self>,
        blank: usize,
    ) -> FloatTensor<Self> {
        // PyTorch's CTC requires int64 for targets and length tensors.
        let targets_i64 = targets.tensor.to_kind(tch::Kind::Int64);
        let input_lengths_i64 = input_lengths.tensor.to_kind(tch::Kind::Int64);
        let target_lengths_i64 = target_lengths.tensor.to_kind(tch::Kind::Int64);

        // Reduction::None returns per-sample losses [N], matching the trait contract.
        let tensor = tch::Tensor::ctc_loss_tensor(
            &log_probs.tensor,
            &targets_i64,
            &input_lengths_i64,
            &target_lengths_i64,
            blank as i64,
            tch::Reduction::None,
            false,
        );

        TchTensor::new(tensor)
    }

    fn ctc_loss_backward(
        log_probs: FloatTensor<Self>,
        targets: IntTensor<Self>,
        input_lengths: IntTensor<Self>,
        target_lengths: IntTensor<Self>,
        grad_loss: FloatTensor<Self>,
        blank: usize,
    ) -> FloatTensor<Self> {
        let targets_i64 = targets.tensor.to_kind(tch::Kind::Int64);
        let input_lengths_i64 = input_lengths.tensor.to_kind(tch::Kind::Int64);
        let target_lengths_i64 = target_lengths.tensor.to_kind(tch::Kind::Int64);

        // Recompute forward to get neg_log_likelihood and log_alpha (LibTorch's
        // backward needs both). PyTorch caches log_alpha during the autograd
        // forward; our trait has no caching slot for it, so we redo the alpha
        // recursion here. This is still a single-call into LibTorch's fused
        // kernel and avoids the ~40T host-side dispatches.
        let (neg_log_likelihood, log_alpha) = tch::Tensor::internal_ctc_loss_tensor(
            &log_probs.tensor,
            &targets_i64,
            &input_lengths_i64,
            &target_lengths_i64,
            blank as i64,
            false,
        );

        let grad = tch::Tensor::internal_ctc_loss_backward_tensor(
            &grad_loss.tensor,
            &log_probs.tensor,
            &targets_i64,
            &input_lengths_i64,
            &target_lengths_i64,
            &neg_log_likelihood,
            &log_alpha,
            blank as i64,
            false,
        );

        TchTensor::new(grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_backend::{
        TensorData, Tolerance,
        ops::{FloatTensorOps, IntTensorOps},
        read_sync,
    };

    type B = crate::LibTorch;

    #[test]
    fn ctc_loss_uniform() {
        // T=3, N=1, C=2, blank=0, target=[1, 1].
        // Only valid alignment is (1, 0, 1) with prob (1/2)^3.
        // Loss = -ln(1/8) = 3 * ln(2)
        let device = Default::default();
        let log_probs_data = vec![(0.5f32).ln(); 3 * 2];
        let log_probs = B::float_from_data(TensorData::new(log_probs_data, [3, 1, 2]), &device);
        let targets = B::int_from_data(TensorData::from([[1i64, 1]]), &device);
        let input_lengths = B::int_from_data(TensorData::from([3i64]), &device);
        let target_lengths = B::int_from_data(TensorData::from([2i64]), &device);

        let loss =
            <B as ModuleOps<B>>::ctc_loss(log_probs, targets, input_lengths, target_lengths, 0);

        let out = read_sync(B::float_into_data(loss)).unwrap();
        let expected = TensorData::from([3.0f32 * 2.0f32.ln()]);
        out.assert_approx_eq::<f32>(&expected, Tolerance::rel_abs(1e-3, 1e-3));
    }
}

/// `OPENCARBON_CONV_GRAD=native|burn` (default native), read once, so one build benchmarks both
/// routes. libtorch's kernels are the faster on both devices: on one H200 burn's weight gradient
/// made a ResNet-18 backward 166 ms against PyTorch's 23 ms (batch 128), and on 2 CPU cores the
/// native route takes the backward from 170 to 145–155 ms (batch 32, 64²; docs/backends.md, "Performance").
fn conv_grad_native() -> bool {
    static NATIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NATIVE.get_or_init(|| std::env::var("OPENCARBON_CONV_GRAD").as_deref() != Ok("burn"))
}

/// burn-backend 0.22.1's default input gradient (symmetric padding), as it is: a transposed
/// convolution of the output gradient, with the output padding that restores the input's size.
fn input_grad_by_transposed_convolution(
    x: &TchTensor,
    weight: &TchTensor,
    output_grad: &TchTensor,
    options: &ConvOptions<2>,
) -> TchTensor {
    let input = x.tensor.size();
    let output = output_grad.tensor.size();
    let kernel = weight.tensor.size();
    let padding = options.padding_begin();
    let output_padding: [i64; 2] = std::array::from_fn(|d| {
        let (stride, dilation) = (options.stride[d] as i64, options.dilation[d] as i64);
        if stride <= 1 {
            return 0;
        }
        let dilated_kernel = dilation * (kernel[d + 2] - 1) + 1;
        let covered = (output[d + 2] - 1) * stride + dilated_kernel - 2 * padding[d] as i64;
        (input[d + 2] - covered).max(0)
    });
    TchTensor::new(tch::Tensor::conv_transpose2d(
        &output_grad.tensor,
        &weight.tensor,
        None::<tch::Tensor>,
        options.stride.map(|s| s as i64),
        padding.map(|p| p as i64),
        output_padding,
        options.groups as i64,
        options.dilation.map(|d| d as i64),
    ))
}

/// burn-backend 0.22.1's default weight gradient (no groups, symmetric padding), as it is:
/// conv2d(xᵀ, output_gradᵀ) with stride and dilation swapped, transposed back, cropped.
fn weight_grad_by_convolution(
    x: &TchTensor,
    weight: &TchTensor,
    output_grad: &TchTensor,
    options: &ConvOptions<2>,
) -> TchTensor {
    let grad = tch::Tensor::conv2d(
        &x.tensor.transpose(0, 1),
        &output_grad.tensor.transpose(0, 1),
        None::<tch::Tensor>,
        options.dilation.map(|d| d as i64),
        options.padding_begin().map(|p| p as i64),
        options.stride.map(|s| s as i64),
        1,
    )
    .transpose(0, 1);
    let shape = weight.tensor.size();
    let grad = grad
        .narrow(2, 0, shape[2])
        .narrow(3, 0, shape[3])
        .contiguous();
    TchTensor::new(grad)
}

/// Which gradient of a convolution [`native_conv2d_grad`] returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ConvGrad {
    Input,
    Weight,
}

/// The gradient of `conv2d(x, weight)` with respect to `x` or `weight`, given the gradient of its
/// output, from libtorch's `convolution_backward` with just that gradient in its output mask.
/// Asymmetric padding is applied to the input first (as the forward does), and the input
/// gradient cropped back to the unpadded input.
fn native_conv2d_grad(
    x: &TchTensor,
    weight: &TchTensor,
    output_grad: &TchTensor,
    options: &ConvOptions<2>,
    want: ConvGrad,
) -> TchTensor {
    let (input, padding) = if options.is_asymmetric() {
        let [(top, bottom), (left, right)] = options.padding;
        let pad = [left as i64, right as i64, top as i64, bottom as i64];
        (x.tensor.constant_pad_nd(pad), [0i64, 0])
    } else {
        (
            x.tensor.shallow_clone(),
            options.padding_begin().map(|p| p as i64),
        )
    };
    let geometry = crate::native::ConvGeometry {
        stride: &options.stride.map(|s| s as i64),
        padding: &padding,
        dilation: &options.dilation.map(|d| d as i64),
        groups: options.groups as i64,
    };
    let want_input = want == ConvGrad::Input;
    let (input_grad, weight_grad) = crate::native::convolution_backward(
        &output_grad.tensor,
        &input,
        &weight.tensor,
        &geometry,
        want_input,
        !want_input,
    )
    .unwrap_or_else(|error| panic!("convolution backward: {error}"));
    let grad = if want_input { input_grad } else { weight_grad }
        .expect("convolution_backward returns the gradient it was asked for");
    if want_input && options.is_asymmetric() {
        let [(top, _), (left, _)] = options.padding;
        let size = x.tensor.size();
        return TchTensor::new(
            grad.narrow(2, top as i64, size[2])
                .narrow(3, left as i64, size[3])
                .contiguous(),
        );
    }
    TchTensor::new(grad)
}

/// `OPENCARBON_TCH_BATCH_NORM=native|burn` (default native), read once. libtorch's fused kernels
/// beat burn's composite arithmetic on 2 CPU cores (ResNet-18 step at batch 32, 64²: forward 63 vs
/// 73–76 ms, backward 122–124 vs 145–170 ms) and held 14 of burn's 166 ms backward on one H200.
fn native_batch_norm() -> bool {
    static NATIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NATIVE.get_or_init(|| std::env::var("OPENCARBON_TCH_BATCH_NORM").as_deref() != Ok("burn"))
}

/// burn-backend 0.22.1's default BatchNorm arithmetic, written with tch ops, for
/// `OPENCARBON_TCH_BATCH_NORM=burn` (benchmarks compare both in one build).
mod bn_reference {
    use tch::Tensor;

    /// `[C]` → `[1, C, 1, …]` for an input of `rank`.
    fn per_channel(t: &Tensor, rank: usize) -> Tensor {
        let mut shape = vec![1i64; rank];
        shape[1] = -1;
        t.reshape(shape.as_slice())
    }

    /// `[N, C, …]` → `[C, N·…]` (a copy, as burn's swap_dims + reshape).
    fn channels_first(x: &Tensor) -> Tensor {
        let c = x.size()[1];
        x.transpose(0, 1).reshape([c, -1])
    }

    pub fn inference(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        variance: &Tensor,
        epsilon: f64,
    ) -> Tensor {
        let rank = x.dim();
        let std = (per_channel(variance, rank) + epsilon).sqrt();
        (x - per_channel(mean, rank)) / std * per_channel(gamma, rank) + per_channel(beta, rank)
    }

    pub fn train(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        epsilon: f64,
    ) -> (Tensor, Tensor, Tensor) {
        let rank = x.dim();
        let mean = channels_first(x).mean_dim(1, false, None);
        let centred = x - per_channel(&mean, rank);
        let variance = channels_first(&(&centred * &centred)).mean_dim(1, false, None);
        let output = inference(x, gamma, beta, &mean, &variance, epsilon);
        (output, mean, variance)
    }

    pub fn backward(
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        variance: &Tensor,
        epsilon: f64,
        output_grad: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let rank = x.dim();
        let inv_std = per_channel(&(variance + epsilon).sqrt().reciprocal(), rank);
        let normalized = (x - per_channel(mean, rank)) * &inv_std;
        let grad_flat = channels_first(output_grad);
        let normalized_grad_flat = channels_first(&(output_grad * &normalized));
        let beta_grad = grad_flat.sum_dim_intlist(1, false, None);
        let gamma_grad = normalized_grad_flat.sum_dim_intlist(1, false, None);
        let mean_grad = per_channel(&grad_flat.mean_dim(1, false, None), rank);
        let mean_normalized_grad =
            per_channel(&normalized_grad_flat.mean_dim(1, false, None), rank);
        let centred_grad = output_grad - mean_grad;
        let projected = normalized * mean_normalized_grad;
        let x_grad = per_channel(gamma, rank) * inv_std * (centred_grad - projected);
        (x_grad, gamma_grad, beta_grad)
    }
}
