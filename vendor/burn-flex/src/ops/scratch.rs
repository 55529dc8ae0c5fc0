//! OpenCarbon-rs patch: scratch buffers the convolution kernels reuse, per thread.
//!
//! Every convolution call allocated its im2col matrix, its gathered output gradient and its gemm
//! result afresh, zero-filled, and then overwrote every element: on 2 cores the zero-filling
//! alone took ~10 % of whole-city inference. A buffer handed out here holds whatever its last
//! user left (valid numbers, never uninitialised memory), so it is only for buffers the caller
//! overwrites entirely before reading. Buffers return to their thread's pool when dropped; each
//! pool keeps at most [`KEPT`] buffers and [`KEPT_BYTES`] in all. Without `std` (no
//! thread-locals) every buffer is a fresh zeroed allocation, as before.

use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

use super::conv2d_gemm::GradElement;

/// Buffers kept per thread and element type.
pub const KEPT: usize = 4;
/// Bytes kept per thread and element type.
pub const KEPT_BYTES: usize = 64 << 20;

/// A buffer of `len` elements whose contents are unspecified (earlier results or zeros).
pub struct Scratch<T: GradElement> {
    buf: Vec<T>,
}

/// A scratch buffer of `len` elements from this thread's pool: the smallest kept one that holds
/// `len` without growing, else the largest, resized.
pub fn scratch<T: GradElement>(len: usize) -> Scratch<T> {
    let mut buf = T::scratch_pool(|pool| {
        let fits = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity());
        let pick = fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
        pick.map(|i| pool.swap_remove(i))
    })
    .unwrap_or_default();
    // Shrinking keeps the capacity; growing writes zeros only past the old length.
    buf.resize(len, T::zero());
    Scratch { buf }
}

impl<T: GradElement> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = core::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return;
        }
        T::scratch_pool(|pool| {
            pool.push(buf);
            // Keep the largest, within the bounds.
            pool.sort_by_key(|b| core::cmp::Reverse(b.capacity()));
            let mut bytes = 0;
            let mut keep = 0;
            for b in pool.iter() {
                let size = b.capacity() * core::mem::size_of::<T>();
                if keep == KEPT || bytes + size > KEPT_BYTES {
                    break;
                }
                bytes += size;
                keep += 1;
            }
            pool.truncate(keep);
        });
    }
}

impl<T: GradElement> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf
    }
}

impl<T: GradElement> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf
    }
}

/// This thread's pool of `Vec<$t>`.
macro_rules! pool_of {
    ($t:ty, $name:ident) => {
        #[cfg(feature = "std")]
        std::thread_local! {
            static $name: core::cell::RefCell<Vec<Vec<$t>>> = const { core::cell::RefCell::new(Vec::new()) };
        }
        impl PoolOf for $t {
            fn scratch_pool<R>(f: impl FnOnce(&mut Vec<Vec<$t>>) -> R) -> R {
                #[cfg(feature = "std")]
                {
                    // The closures above never call back in, so the borrow cannot be held twice;
                    // during thread teardown there is no pool, and the buffer is simply freed.
                    let mut f = Some(f);
                    let mut run = |pool: &mut Vec<Vec<$t>>| f.take().map(|f| f(pool));
                    match $name.try_with(|pool| run(&mut pool.borrow_mut())) {
                        Ok(Some(result)) => result,
                        _ => run(&mut Vec::new()).expect("not run yet"),
                    }
                }
                #[cfg(not(feature = "std"))]
                {
                    f(&mut Vec::new())
                }
            }
        }
    };
}

/// Element types with a per-thread pool.
pub trait PoolOf: Sized {
    /// Runs `f` on this thread's pool of buffers of this type.
    fn scratch_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;
}

pool_of!(f32, POOL_F32);
pool_of!(f64, POOL_F64);

/// Below this many elements [`written`] stays on the calling thread.
#[cfg(feature = "rayon")]
const PARALLEL_ELEMENTS: usize = 1 << 14;

/// A new vector of `len` elements, written by `fill(start, part)` over consecutive parts of
/// `part_len` elements (the last may be shorter), in parallel when large; without zero-filling
/// it first (a serial pass over fresh memory, which the parallel writers then pay again).
///
/// # Safety
/// `fill` must write every element of each part it is given.
pub(crate) unsafe fn written<T: Copy + Send + Sync>(
    len: usize,
    part_len: usize,
    fill: impl Fn(usize, &mut [core::mem::MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let mut out = Vec::<T>::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let part_len = part_len.max(1);
    #[cfg(feature = "rayon")]
    if len >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        spare
            .par_chunks_mut(part_len)
            .enumerate()
            .for_each(|(i, part)| fill(i * part_len, part));
        // SAFETY: every part was written (the caller's contract), and the parts cover `len`.
        unsafe { out.set_len(len) };
        return out;
    }
    for (i, part) in spare.chunks_mut(part_len).enumerate() {
        fill(i * part_len, part);
    }
    // SAFETY: as above.
    unsafe { out.set_len(len) };
    out
}
