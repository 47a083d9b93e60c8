//! The block's memory allocator (the `talc` feature, on by default): size classes in front of
//! talc.
//!
//! Every bag a block reads or writes is a tree of small allocations (its keys, its strings, the
//! map's nodes), so the allocator is a large part of a block's own time: counted with callgrind
//! in the 3-block bench pipeline, talc alone took a fifth of the blocks' instructions. Here a
//! request of at most [`LARGEST`] bytes (alignment at most [`GRAIN`]) is served from a free list
//! per size class, and a free pushes the block back on its list: a few instructions each way.
//! The lists are refilled from chunks that talc hands out; anything larger goes to talc itself.
//!
//! Invariants:
//! - Linear memory grows only through talc, which grows it with `memory.grow`, so the host's
//!   store limiter still decides, and an allocation past the block's `memory_mb` fails (an abort,
//!   a trap) as before. Near that limit, when a whole chunk no longer fits, one block of the
//!   class is taken from talc instead.
//! - A block of a size class never goes back to talc: freed, it waits on its class's list for
//!   the next request of that class. So a block holds at most the peak it used of each class
//!   (linear memory never shrinks anyway).
//! - Whether a block is small is decided by its `Layout` alone, which Rust passes unchanged to
//!   `dealloc` and `realloc`, so the two sides always agree.
//!
//! One thread: wasm32-wasip2 without the `atomics` feature has exactly one, so the lists need no
//! lock.
//!
//! A block that wants its own `#[global_allocator]` turns the SDK's default features off.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

/// Small blocks are multiples of this and aligned to it.
const GRAIN: usize = 16;
/// Up to this size, the classes are [`GRAIN`] apart.
const FINE: usize = 256;
/// The largest request served from a size class.
const LARGEST: usize = 1024;
/// One class per [`GRAIN`] up to [`FINE`], then 512 and 1024.
const CLASSES: usize = FINE / GRAIN + 2;
/// What the first refill takes from talc: small, so that an idle block touches little memory.
const FIRST_CHUNK: usize = 4 << 10;
/// Each refill takes twice what the one before took, up to this.
const CHUNK: usize = 64 << 10;

/// The class of a small request (`1..=LARGEST` bytes): its list's index and its block size.
#[inline]
fn class(size: usize) -> (usize, usize) {
    if size <= FINE {
        let i = size.div_ceil(GRAIN) - 1;
        (i, (i + 1) * GRAIN)
    } else if size <= 512 {
        (CLASSES - 2, 512)
    } else {
        (CLASSES - 1, LARGEST)
    }
}

/// Whether a layout is served from a size class.
#[inline]
fn small(layout: &Layout) -> bool {
    layout.size() <= LARGEST && layout.align() <= GRAIN
}

struct Lists {
    /// Each class's freed blocks, linked through their first word.
    free: [*mut u8; CLASSES],
    /// The unused rest of the last chunk.
    bump: *mut u8,
    end: *mut u8,
    /// What the next refill takes.
    chunk: usize,
}

/// The global allocator: [`Lists`] for small blocks, `L` (talc in a block) for the rest and for
/// chunks.
pub struct Allocator<L> {
    lists: UnsafeCell<Lists>,
    large: L,
}

// SAFETY: the global one lives in wasm32-wasip2 without `atomics`, which runs one thread, so the
// lists are never shared; the tests use theirs from one thread.
unsafe impl<L: Sync> Sync for Allocator<L> {}

impl<L: GlobalAlloc> Allocator<L> {
    pub(crate) const fn new(large: L) -> Self {
        Allocator {
            lists: UnsafeCell::new(Lists {
                free: [ptr::null_mut(); CLASSES],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
                chunk: FIRST_CHUNK,
            }),
            large,
        }
    }

    /// A fresh block of `bytes` (a class size) from a new chunk or, when no chunk fits any
    /// more, alone from talc.
    #[cold]
    unsafe fn refill(&self, lists: &mut Lists, bytes: usize) -> *mut u8 {
        // SAFETY (all three): the layouts are valid (sizes above 0, GRAIN a power of two).
        let size = lists.chunk;
        let chunk = unsafe { self.large.alloc(Layout::from_size_align_unchecked(size, GRAIN)) };
        if chunk.is_null() {
            return unsafe { self.large.alloc(Layout::from_size_align_unchecked(bytes, GRAIN)) };
        }
        lists.chunk = (size * 2).min(CHUNK);
        lists.bump = unsafe { chunk.add(bytes) };
        lists.end = unsafe { chunk.add(size) };
        chunk
    }
}

unsafe impl<L: GlobalAlloc> GlobalAlloc for Allocator<L> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !small(&layout) {
            // SAFETY: the caller's layout, passed on.
            return unsafe { self.large.alloc(layout) };
        }
        // SAFETY: one thread, and no allocation happens while this borrow lives.
        let lists = unsafe { &mut *self.lists.get() };
        let (i, bytes) = class(layout.size());
        let head = lists.free[i];
        if !head.is_null() {
            // SAFETY: a freed block of this class holds the next one's address in its first word.
            lists.free[i] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        if (lists.end as usize) - (lists.bump as usize) >= bytes {
            let block = lists.bump;
            // SAFETY: within the current chunk.
            lists.bump = unsafe { block.add(bytes) };
            return block;
        }
        // SAFETY: `bytes` is a class size.
        unsafe { self.refill(lists, bytes) }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if !small(&layout) {
            // SAFETY: allocated by talc with this layout.
            return unsafe { self.large.dealloc(block, layout) };
        }
        // SAFETY: one thread; the block is at least GRAIN bytes, aligned to GRAIN, and no longer
        // used by its owner, so its first word may hold the list's link.
        let lists = unsafe { &mut *self.lists.get() };
        let (i, _) = class(layout.size());
        unsafe { block.cast::<*mut u8>().write(lists.free[i]) };
        lists.free[i] = block;
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let was_small = small(&layout);
        if was_small && new_size <= LARGEST && class(new_size).0 == class(layout.size()).0 {
            return block;
        }
        if !was_small && new_size > LARGEST {
            // SAFETY: allocated by talc with this layout; talc may grow it in place.
            return unsafe { self.large.realloc(block, layout, new_size) };
        }
        // Between a class and talc, or between two classes: a new block and a copy.
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

#[cfg(all(feature = "talc", not(target_feature = "atomics"), target_family = "wasm"))]
#[global_allocator]
static ALLOCATOR: Allocator<talc::wasm::WasmDynamicTalc> = Allocator::new(talc::wasm::new_wasm_dynamic_allocator());

#[cfg(test)]
#[path = "alloc_tests.rs"]
mod tests;
