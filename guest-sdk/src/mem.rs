//! `memcmp` and `bcmp` eight bytes at a time, in place of wasi-libc's byte-at-a-time loop.
//!
//! A bag's map is a `BTreeMap` of strings: every key found or inserted is compared with several
//! others, and each comparison is a `memcmp` call. Counted with callgrind in the 3-block bench
//! pipeline, wasi-libc's `memcmp` (one byte per round) was a tenth of the blocks' instructions.
//! Defined here, these are the ones the block links: a symbol the block's own code defines is not
//! taken from the libc archive.
//!
//! Invariant: the same results as the C functions (the sign of the first differing byte, as
//! unsigned, for `memcmp`; zero exactly when equal for `bcmp`). The loops only load and compare,
//! so the compiler cannot turn them back into a call to themselves.

/// The index of the first byte that differs in two little-endian words that differ.
#[inline(always)]
fn first_difference(x: u64, y: u64) -> usize {
    ((x ^ y).trailing_zeros() / 8) as usize
}

/// Compares `n` bytes at `a` and `b`: negative, zero or positive as the first differing byte of
/// `a` is below, equal to or above `b`'s.
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
#[cfg_attr(all(feature = "fast-mem", target_family = "wasm"), unsafe(no_mangle))]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, and the caller vouches for `n` bytes; wasm loads need no alignment.
        let (x, y) = unsafe { (a.add(i).cast::<u64>().read_unaligned(), b.add(i).cast::<u64>().read_unaligned()) };
        if x != y {
            let at = i + first_difference(x, y);
            // SAFETY: within the word just read.
            return unsafe { i32::from(*a.add(at)) - i32::from(*b.add(at)) };
        }
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Whether `n` bytes at `a` and `b` differ: zero exactly when they are equal.
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
#[cfg_attr(all(feature = "fast-mem", target_family = "wasm"), unsafe(no_mangle))]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's promise, passed on.
    i32::from(unsafe { memcmp(a, b, n) } != 0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// The same answers as the slices' own comparison, for lengths around a word's and for
        /// differences at every place (bytes above 127 included: they compare as unsigned).
        #[test]
        fn memcmp_and_bcmp_agree_with_the_slices_order(
            a in prop::collection::vec(any::<u8>(), 0..40),
            changes in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
            shorter in 0usize..3,
        ) {
            let mut b = a.clone();
            for (at, byte) in changes {
                if !b.is_empty() {
                    let len = b.len();
                    b[at % len] = byte;
                }
            }
            let n = a.len().saturating_sub(shorter);
            let (a, b) = (&a[..n], &b[..n]);
            // SAFETY: both are `n` bytes long.
            let (m, e) = unsafe { (super::memcmp(a.as_ptr(), b.as_ptr(), n), super::bcmp(a.as_ptr(), b.as_ptr(), n)) };
            prop_assert_eq!(m.signum(), a.cmp(b) as i32, "memcmp of {:?} and {:?}", a, b);
            prop_assert_eq!(e == 0, a == b, "bcmp of {:?} and {:?}", a, b);
        }
    }
}
