//! OpenCarbon-rs patch: safe wrappers over `src/native/shim.cpp`, the libtorch kernels tch 0.22
//! does not wrap: `convolution_backward`, `native_batch_norm_backward`, the fused Adam update,
//! the TF32 switches, the CUDA caching allocator's memory counters and the Kineto profiler.

use std::ffi::{CStr, CString, c_char, c_int};
use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn oc_free_error(message: *mut c_char);
    fn oc_convolution_backward(
        grad_output: *mut C_tensor,
        input: *mut C_tensor,
        weight: *mut C_tensor,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        spatial_dims: i64,
        groups: i64,
        want_input: c_int,
        want_weight: c_int,
        input_grad: *mut *mut C_tensor,
        weight_grad: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn oc_batch_norm_backward(
        grad_output: *mut C_tensor,
        input: *mut C_tensor,
        gamma: *mut C_tensor,
        mean: *mut C_tensor,
        invstd: *mut C_tensor,
        epsilon: f64,
        input_grad: *mut *mut C_tensor,
        gamma_grad: *mut *mut C_tensor,
        beta_grad: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn oc_fused_adam(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        steps: *const *mut C_tensor,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        epsilon: f64,
    ) -> *mut c_char;
    fn oc_set_tf32(cublas: c_int, cudnn: c_int) -> *mut c_char;
    fn oc_get_tf32(cublas: *mut c_int, cudnn: *mut c_int) -> *mut c_char;
    fn oc_cuda_memory(
        device: i64,
        allocated: *mut i64,
        peak_allocated: *mut i64,
        peak_reserved: *mut i64,
    ) -> *mut c_char;
    fn oc_cuda_reset_peak_memory(device: i64) -> *mut c_char;
    fn oc_profiler_start(cuda: c_int) -> *mut c_char;
    fn oc_profiler_stop(trace_path: *const c_char) -> *mut c_char;
}

/// A libtorch error (the C++ exception's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeError(pub String);

impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "libtorch: {}", self.0)
    }
}

impl std::error::Error for NativeError {}

fn check(message: *mut c_char) -> Result<(), NativeError> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'd by the shim, freed once here.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { oc_free_error(message) };
    Err(NativeError(text))
}

fn ptr(tensor: &Tensor) -> *mut C_tensor {
    tensor.as_ptr() as *mut C_tensor
}

/// Takes ownership of a tensor the shim allocated (None for a gradient that was not asked for).
fn take(pointer: *mut C_tensor) -> Option<Tensor> {
    // SAFETY: the shim hands over a fresh `new at::Tensor`, owned by nobody else.
    (!pointer.is_null()).then(|| unsafe { Tensor::from_ptr(pointer) })
}

/// The geometry of a non-transposed, bias-free convolution with symmetric padding.
pub struct ConvGeometry<'a> {
    /// Per spatial dimension.
    pub stride: &'a [i64],
    /// Per spatial dimension (both sides).
    pub padding: &'a [i64],
    /// Per spatial dimension.
    pub dilation: &'a [i64],
    /// Channel groups.
    pub groups: i64,
}

/// `at::convolution_backward`: the gradients of the input and of the weight that are asked for.
pub fn convolution_backward(
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
    geometry: &ConvGeometry,
    want_input: bool,
    want_weight: bool,
) -> Result<(Option<Tensor>, Option<Tensor>), NativeError> {
    let dims = geometry.stride.len();
    assert!(
        geometry.padding.len() == dims && geometry.dilation.len() == dims,
        "stride, padding and dilation have one entry per spatial dimension"
    );
    let mut input_grad = std::ptr::null_mut();
    let mut weight_grad = std::ptr::null_mut();
    // SAFETY: the tensors outlive the call; the geometry slices hold `dims` entries each.
    check(unsafe {
        oc_convolution_backward(
            ptr(grad_output),
            ptr(input),
            ptr(weight),
            geometry.stride.as_ptr(),
            geometry.padding.as_ptr(),
            geometry.dilation.as_ptr(),
            dims as i64,
            geometry.groups,
            want_input as c_int,
            want_weight as c_int,
            &mut input_grad,
            &mut weight_grad,
        )
    })?;
    Ok((take(input_grad), take(weight_grad)))
}

/// `at::native_batch_norm_backward` in train mode: the gradients of the input, γ and β, from the
/// batch mean and 1/√(var + ε).
pub fn batch_norm_backward(
    grad_output: &Tensor,
    input: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    epsilon: f64,
) -> Result<(Tensor, Tensor, Tensor), NativeError> {
    let mut grads = [std::ptr::null_mut(); 3];
    let [x, g, b] = &mut grads;
    // SAFETY: the tensors outlive the call.
    check(unsafe {
        oc_batch_norm_backward(
            ptr(grad_output),
            ptr(input),
            ptr(gamma),
            ptr(mean),
            ptr(invstd),
            epsilon,
            x,
            g,
            b,
        )
    })?;
    let missing = || NativeError("batch norm backward returned no gradient".into());
    let [x, g, b] = grads.map(take);
    Ok((
        x.ok_or_else(missing)?,
        g.ok_or_else(missing)?,
        b.ok_or_else(missing)?,
    ))
}

/// Adam's hyper-parameters for [`fused_adam_`] (torch's names and meaning).
#[derive(Clone, Copy, Debug)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Coupled L2 weight decay (added to the gradient).
    pub weight_decay: f64,
    /// Added to √v̂.
    pub epsilon: f64,
}

/// One step of `torch.optim.Adam(fused=True)`: adds one to each parameter's step count (a
/// one-element float tensor on its device; parameters that first got a gradient later have
/// counted fewer steps, and their bias correction says so), then `torch._fused_adam_` updates
/// every parameter and its two moments in place, in one multi-tensor kernel per device and dtype.
pub fn fused_adam_(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    steps: &[Tensor],
    hyper: AdamHyper,
) -> Result<(), NativeError> {
    let n = params.len();
    if [grads.len(), exp_avgs.len(), exp_avg_sqs.len(), steps.len()] != [n; 4] {
        return Err(NativeError(format!(
            "fused Adam needs as many gradients, moments and step counts as parameters ({n}), got {}, {}, {} and {}",
            grads.len(),
            exp_avgs.len(),
            exp_avg_sqs.len(),
            steps.len()
        )));
    }
    let pointers = |list: &[Tensor]| list.iter().map(ptr).collect::<Vec<_>>();
    let (p, g, m, v, t) = (
        pointers(params),
        pointers(grads),
        pointers(exp_avgs),
        pointers(exp_avg_sqs),
        pointers(steps),
    );
    // SAFETY: five arrays of `n` live tensors.
    check(unsafe {
        oc_fused_adam(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            t.as_ptr(),
            n as i64,
            hyper.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.weight_decay,
            hyper.epsilon,
        )
    })
}

/// Where libtorch may use TF32 tensor cores (fp32 storage, 10-bit-mantissa products) on CUDA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tf32 {
    /// cuBLAS matmuls (`torch.backends.cuda.matmul.allow_tf32`; off by default).
    pub matmul: bool,
    /// cuDNN convolutions (`torch.backends.cudnn.allow_tf32`; on by default).
    pub convolution: bool,
}

/// Sets where TF32 may be used, process-wide.
pub fn set_tf32(tf32: Tf32) -> Result<(), NativeError> {
    // SAFETY: no pointers.
    check(unsafe { oc_set_tf32(tf32.matmul as c_int, tf32.convolution as c_int) })
}

/// Where TF32 may be used now.
pub fn tf32() -> Result<Tf32, NativeError> {
    let (mut matmul, mut convolution) = (0, 0);
    // SAFETY: two out-pointers to live integers.
    check(unsafe { oc_get_tf32(&mut matmul, &mut convolution) })?;
    Ok(Tf32 {
        matmul: matmul != 0,
        convolution: convolution != 0,
    })
}

/// Byte counters of the CUDA caching allocator for one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CudaMemory {
    /// Bytes held by live tensors now.
    pub allocated: i64,
    /// The most bytes held by live tensors since the last reset.
    pub peak_allocated: i64,
    /// The most bytes the allocator held from the driver since the last reset.
    pub peak_reserved: i64,
}

/// The CUDA caching allocator's counters for `device` (an error where CUDA is not initialised).
pub fn cuda_memory(device: usize) -> Result<CudaMemory, NativeError> {
    let mut memory = CudaMemory::default();
    // SAFETY: three out-pointers to live integers.
    check(unsafe {
        oc_cuda_memory(
            device as i64,
            &mut memory.allocated,
            &mut memory.peak_allocated,
            &mut memory.peak_reserved,
        )
    })?;
    Ok(memory)
}

/// Restarts the peak counters of [`cuda_memory`].
pub fn cuda_reset_peak_memory(device: usize) -> Result<(), NativeError> {
    // SAFETY: no pointers.
    check(unsafe { oc_cuda_reset_peak_memory(device as i64) })
}

/// Starts libtorch's Kineto profiler on this thread: CPU operators, and CUDA kernels (through
/// CUPTI) when `cuda` is set.
pub fn profiler_start(cuda: bool) -> Result<(), NativeError> {
    // SAFETY: no pointers.
    check(unsafe { oc_profiler_start(cuda as c_int) })
}

/// Stops the profiler and writes what it recorded as a Chrome trace (JSON) to `path`.
pub fn profiler_stop(path: &std::path::Path) -> Result<(), NativeError> {
    let path = CString::new(path.to_string_lossy().into_owned())
        .map_err(|_| NativeError(format!("trace path {} holds a NUL byte", path.display())))?;
    // SAFETY: a NUL-terminated string that outlives the call.
    check(unsafe { oc_profiler_stop(path.as_ptr()) })
}
