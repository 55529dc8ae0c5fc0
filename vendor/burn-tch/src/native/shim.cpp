// OpenCarbon-rs patch: the few libtorch entry points that tch 0.22 does not wrap, as a C ABI.
// Tensors cross as `at::Tensor*` (tch's `C_tensor`); new tensors are heap-allocated and owned by
// the Rust side (`tch::Tensor::from_ptr`). Every function returns nullptr on success or a
// malloc'd error message, which the caller frees with `oc_free_error`.
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/native_batch_norm_backward.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <stdexcept>
#include <vector>

namespace {

char *error_message(const char *what) {
  char *copy = static_cast<char *>(std::malloc(std::strlen(what) + 1));
  if (copy != nullptr) std::strcpy(copy, what);
  return copy;
}

template <typename F> char *guarded(F &&body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception &error) {
    return error_message(error.what());
  } catch (...) {
    return error_message("unknown C++ exception");
  }
}

at::Tensor *owned(at::Tensor tensor) {
  return tensor.defined() ? new at::Tensor(std::move(tensor)) : nullptr;
}

std::vector<at::Tensor> tensors(at::Tensor **pointers, int64_t n) {
  std::vector<at::Tensor> list;
  list.reserve(n);
  for (int64_t i = 0; i < n; ++i) list.push_back(*pointers[i]);
  return list;
}

} // namespace

extern "C" {

void oc_free_error(char *message) { std::free(message); }

// `at::convolution_backward` for a non-transposed convolution without bias: the gradients of the
// input and/or the weight (cuDNN's backward-data / backward-filter kernels on CUDA), in one call.
char *oc_convolution_backward(at::Tensor *grad_output, at::Tensor *input, at::Tensor *weight,
                              const int64_t *stride, const int64_t *padding,
                              const int64_t *dilation, int64_t spatial_dims, int64_t groups,
                              int want_input, int want_weight, at::Tensor **input_grad,
                              at::Tensor **weight_grad) {
  return guarded([&] {
    std::vector<int64_t> output_padding(spatial_dims, 0);
    auto grads = at::convolution_backward(
        *grad_output, *input, *weight, c10::nullopt, at::IntArrayRef(stride, spatial_dims),
        at::IntArrayRef(padding, spatial_dims), at::IntArrayRef(dilation, spatial_dims),
        /*transposed=*/false, output_padding, groups,
        {want_input != 0, want_weight != 0, false});
    *input_grad = want_input ? owned(std::get<0>(grads)) : nullptr;
    *weight_grad = want_weight ? owned(std::get<1>(grads)) : nullptr;
  });
}

// `at::native_batch_norm_backward` in train mode from the batch statistics (mean, 1/√(var+ε)):
// the gradients of the input, γ and β in one kernel.
char *oc_batch_norm_backward(at::Tensor *grad_output, at::Tensor *input, at::Tensor *gamma,
                             at::Tensor *mean, at::Tensor *invstd, double epsilon,
                             at::Tensor **input_grad, at::Tensor **gamma_grad,
                             at::Tensor **beta_grad) {
  return guarded([&] {
    auto grads = at::native_batch_norm_backward(*grad_output, *input, *gamma, c10::nullopt,
                                                c10::nullopt, *mean, *invstd, /*train=*/true,
                                                epsilon, {true, true, true});
    *input_grad = owned(std::get<0>(grads));
    *gamma_grad = owned(std::get<1>(grads));
    *beta_grad = owned(std::get<2>(grads));
  });
}

// torch.optim.Adam(fused=True)'s step: each parameter's step count (a one-element float tensor
// on its device, as torch keeps it) goes up by one in a multi-tensor add, then one multi-tensor
// kernel updates every parameter and its moments in place, with coupled L2 weight decay.
char *oc_fused_adam(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                    at::Tensor **exp_avg_sqs, at::Tensor **steps, int64_t n, double lr,
                    double beta1, double beta2, double weight_decay, double epsilon) {
  return guarded([&] {
    auto p = tensors(params, n);
    auto g = tensors(grads, n);
    auto m = tensors(exp_avgs, n);
    auto v = tensors(exp_avg_sqs, n);
    auto t = tensors(steps, n);
    at::_foreach_add_(t, 1);
    at::_fused_adam_(p, g, m, v, {}, t, lr, beta1, beta2, weight_decay, epsilon,
                     /*amsgrad=*/false, /*maximize=*/false);
  });
}

// TF32 tensor cores for cuBLAS matmuls and cuDNN convolutions, process-wide (no effect on CPU).
// libtorch's defaults, as PyTorch's: cuDNN allowed, cuBLAS not.
char *oc_set_tf32(int cublas, int cudnn) {
  return guarded([&] {
    at::globalContext().setAllowTF32CuBLAS(cublas != 0);
    at::globalContext().setAllowTF32CuDNN(cudnn != 0);
  });
}

char *oc_get_tf32(int *cublas, int *cudnn) {
  return guarded([&] {
    *cublas = at::globalContext().allowTF32CuBLAS() ? 1 : 0;
    *cudnn = at::globalContext().allowTF32CuDNN() ? 1 : 0;
  });
}

// The CUDA caching allocator's byte counters for one device: current and peak allocated, peak
// reserved (what the process holds from the driver).
char *oc_cuda_memory(int64_t device, int64_t *allocated, int64_t *peak_allocated,
                     int64_t *peak_reserved) {
  return guarded([&] {
    auto stats = c10::getDeviceAllocator(c10::DeviceType::CUDA)
                     ->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    constexpr auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[all].current;
    *peak_allocated = stats.allocated_bytes[all].peak;
    *peak_reserved = stats.reserved_bytes[all].peak;
  });
}

char *oc_cuda_reset_peak_memory(int64_t device) {
  return guarded([&] {
    c10::getDeviceAllocator(c10::DeviceType::CUDA)
        ->resetPeakStats(static_cast<c10::DeviceIndex>(device));
  });
}

// libtorch's Kineto profiler on this thread (where burn-tch runs every op): CPU operators, and
// CUDA kernels through CUPTI when `cuda` is set. `oc_profiler_stop` writes a Chrome trace.
char *oc_profiler_start(int cuda) {
  return guarded([&] {
    using torch::profiler::impl::ActivityType;
    using torch::profiler::impl::ProfilerConfig;
    using torch::profiler::impl::ProfilerState;
    std::set<ActivityType> activities{ActivityType::CPU};
    if (cuda) activities.insert(ActivityType::CUDA);
    ProfilerConfig config(ProfilerState::KINETO);
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  });
}

char *oc_profiler_stop(const char *trace_path) {
  return guarded([&] {
    auto result = torch::autograd::profiler::disableProfiler();
    if (!result) throw std::runtime_error("the profiler was not running");
    result->save(trace_path);
  });
}

} // extern "C"
