//! OpenCarbon-rs patch: weights rearranged once per inference scope instead of on every call.
//!
//! The small-map convolutions (`conv2d_dense`) rearrange their weights on every call, and at a
//! batch of 32 that pass costs more than the products: layer4's 3×3 convolutions over 1×1 maps
//! read the whole weight tensor for its centre tap. In inference the weights do not change
//! between calls, so inside [`with_prepared_weights`] the rearranged copy is kept, per thread,
//! for the weight tensor's storage it came from.
//!
//! Why a kept copy cannot go stale: each entry holds a strong reference to the storage it was
//! made from. The storage therefore stays allocated (its address names no other tensor while
//! the entry lives), and it cannot be written in place: every in-place write in burn-flex goes
//! through `Arc::make_mut` (which copies a shared storage first) or `Arc::get_mut` (which
//! refuses). A weight updated inside the scope simply becomes a new storage and a new entry.
//! Leaving the outermost scope drops every entry, so training after it updates its weights in
//! place again. Only contiguous weights starting at their storage's first element are kept;
//! anything else is prepared per call, as outside a scope.
//!
//! Without `std` (no thread-locals) nothing is kept.

use alloc::vec::Vec;

use burn_std::sync::Arc;

use crate::FlexTensor;

/// Most bytes of prepared copies kept per thread; past it the oldest go first.
pub const KEPT_BYTES: usize = 256 << 20;

/// Runs `f` with the weights the convolutions rearrange kept between calls on this thread (see
/// the module documentation). For inference: the kept copies are only dropped when the outermost
/// scope ends, and while one exists, its weight tensor is copied rather than written in place.
pub fn with_prepared_weights<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "std")]
    {
        DEPTH.with(|d| d.set(d.get() + 1));
        // Dropped on return and on unwind alike.
        let _scope = Scope;
        f()
    }
    #[cfg(not(feature = "std"))]
    f()
}

/// Entries kept on this thread (for tests).
pub fn kept_entries() -> usize {
    #[cfg(feature = "std")]
    {
        CACHE.try_with(|c| c.borrow().len()).unwrap_or(0)
    }
    #[cfg(not(feature = "std"))]
    0
}

/// The prepared copy of `weight` for `what` (a description of the rearrangement, e.g. its
/// taps), made by `prepare` from the weight's contiguous values, and kept inside a scope.
pub(crate) fn prepared<T: bytemuck::Pod + Send + Sync>(
    weight: &FlexTensor,
    what: &[usize],
    prepare: impl FnOnce(&[T]) -> Vec<T>,
) -> Arc<Vec<T>> {
    let keepable = weight.is_contiguous() && weight.layout().start_offset() == 0;
    #[cfg(feature = "std")]
    if keepable && DEPTH.with(|d| d.get()) > 0 {
        return kept(weight, what, prepare);
    }
    let _ = keepable;
    let w = weight.to_contiguous();
    let values: &[T] = bytemuck::cast_slice(w.bytes());
    Arc::new(prepare(&values[..weight.layout().num_elements()]))
}

#[cfg(feature = "std")]
struct Entry {
    /// Holds the source storage: alive and unwritable while the entry exists.
    source: Arc<burn_std::Bytes>,
    shape: Vec<usize>,
    dtype: burn_backend::DType,
    what: Vec<usize>,
    prepared: Arc<dyn core::any::Any + Send + Sync>,
    bytes: usize,
}

#[cfg(feature = "std")]
std::thread_local! {
    static DEPTH: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    static CACHE: core::cell::RefCell<Vec<Entry>> = const { core::cell::RefCell::new(Vec::new()) };
}

#[cfg(feature = "std")]
struct Scope;

#[cfg(feature = "std")]
impl Drop for Scope {
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            d.set(d.get() - 1);
            d.get()
        });
        if depth == 0 {
            // Taken out before dropping: nothing runs while the cell is borrowed.
            let entries = CACHE.try_with(|c| core::mem::take(&mut *c.borrow_mut()));
            drop(entries);
        }
    }
}

#[cfg(feature = "std")]
fn kept<T: bytemuck::Pod + Send + Sync>(
    weight: &FlexTensor,
    what: &[usize],
    prepare: impl FnOnce(&[T]) -> Vec<T>,
) -> Arc<Vec<T>> {
    let source = weight.data_arc();
    let shape = weight.layout().shape().to_vec();
    let dtype = weight.dtype();
    let found = CACHE.with(|c| {
        c.borrow()
            .iter()
            .find(|e| {
                Arc::ptr_eq(&e.source, &source)
                    && e.shape == shape
                    && e.dtype == dtype
                    && e.what == what
            })
            .map(|e| e.prepared.clone())
    });
    if let Some(prepared) = found.and_then(|p| p.downcast::<Vec<T>>().ok()) {
        return prepared;
    }
    let values: &[T] = bytemuck::cast_slice(weight.bytes());
    let prepared = Arc::new(prepare(&values[..weight.layout().num_elements()]));
    let bytes = prepared.len() * core::mem::size_of::<T>();
    let entry = Entry {
        source,
        shape,
        dtype,
        what: what.to_vec(),
        prepared: prepared.clone(),
        bytes,
    };
    let evicted = CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        cache.push(entry);
        let mut total: usize = cache.iter().map(|e| e.bytes).sum();
        let mut oldest = 0;
        while total > KEPT_BYTES && oldest + 1 < cache.len() {
            total -= cache[oldest].bytes;
            oldest += 1;
        }
        cache.drain(..oldest).collect::<Vec<_>>()
    });
    drop(evicted);
    prepared
}
