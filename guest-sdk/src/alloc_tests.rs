//! The size classes, natively, over the system allocator: random allocations, reallocations and
//! frees keep every live block's bytes, alignment and size, whatever mix of classes and large
//! blocks they are; a freed block is the next one its class hands out; near the memory limit a
//! class still serves from its backing allocator.

use super::{Allocator, CHUNK, FIRST_CHUNK, LARGEST, class};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;

/// A live block: where, its layout, and the byte it is filled with.
struct Live {
    at: *mut u8,
    layout: Layout,
    fill: u8,
}

fn check(live: &[Live]) {
    for block in live {
        assert_eq!(block.at as usize % block.layout.align(), 0, "alignment of {:?}", block.layout);
        // SAFETY: the block is live and this long.
        let bytes = unsafe { std::slice::from_raw_parts(block.at, block.layout.size()) };
        assert!(bytes.iter().all(|&b| b == block.fill), "a block of {:?} was overwritten", block.layout);
    }
}

fn fill(block: &Live) {
    // SAFETY: the block is live and this long.
    unsafe { std::ptr::write_bytes(block.at, block.fill, block.layout.size()) };
}

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_log: u32 },
    Realloc { which: usize, size: usize },
    Free { which: usize },
}

/// Operations on blocks of at most `largest` bytes.
fn op(largest: usize) -> impl Strategy<Value = Op> {
    // Mostly small, some around the classes' edges, some large.
    let size = prop_oneof![4 => 1usize..=300, 2 => 250usize..=1100, 1 => 1000usize..=largest];
    prop_oneof![
        3 => (size.clone(), 0u32..=6).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
        2 => (any::<usize>(), size).prop_map(|(which, size)| Op::Realloc { which, size }),
        2 => any::<usize>().prop_map(|which| Op::Free { which }),
    ]
}

fn run<L: GlobalAlloc>(allocator: &Allocator<L>, ops: &[Op]) {
    let mut live: Vec<Live> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let fill_byte = (n % 251) as u8 + 1;
        let touched = match *op {
            Op::Alloc { size, align_log } => {
                let layout = Layout::from_size_align(size, 1 << align_log).expect("layout");
                // SAFETY: size above 0.
                let at = unsafe { allocator.alloc(layout) };
                assert!(!at.is_null(), "out of memory for {layout:?}");
                live.push(Live { at, layout, fill: fill_byte });
                live.len() - 1
            }
            Op::Realloc { which, size } if !live.is_empty() => {
                let i = which % live.len();
                let old = &live[i];
                // SAFETY: a live block with its layout; the new size keeps a valid layout.
                let at = unsafe { allocator.realloc(old.at, old.layout, size) };
                assert!(!at.is_null(), "out of memory for {size}");
                let kept = old.layout.size().min(size);
                // SAFETY: the new block is at least `kept` long.
                let bytes = unsafe { std::slice::from_raw_parts(at, kept) };
                assert!(bytes.iter().all(|&b| b == old.fill), "realloc {:?} -> {size} lost bytes", old.layout);
                let layout = Layout::from_size_align(size, old.layout.align()).expect("layout");
                live[i] = Live { at, layout, fill: fill_byte };
                i
            }
            Op::Free { which } if !live.is_empty() => {
                let gone = live.swap_remove(which % live.len());
                // SAFETY: a live block with its layout.
                unsafe { allocator.dealloc(gone.at, gone.layout) };
                continue;
            }
            _ => continue,
        };
        fill(&live[touched]);
        check(&live);
    }
    for gone in live {
        // SAFETY: a live block with its layout.
        unsafe { allocator.dealloc(gone.at, gone.layout) };
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn live_blocks_keep_their_bytes_alignment_and_size(ops in prop::collection::vec(op(70_000), 1..400)) {
        run(&Allocator::new(System), &ops);
    }

    #[test]
    fn near_the_limit_a_class_is_served_one_block_at_a_time(ops in prop::collection::vec(op(FIRST_CHUNK - 1), 1..200)) {
        run(&Allocator::new(Backing::refusing_from(FIRST_CHUNK)), &ops);
    }
}

#[test]
fn a_freed_block_is_the_next_its_class_hands_out_and_a_size_within_the_class_stays_put() {
    let a = Allocator::new(System);
    let layout = Layout::from_size_align(40, 8).expect("layout");
    // SAFETY: valid layouts, blocks used only while live.
    unsafe {
        let first = a.alloc(layout);
        let second = a.alloc(layout);
        assert_ne!(first, second);
        a.dealloc(first, layout);
        assert_eq!(a.alloc(Layout::from_size_align(33, 1).expect("layout")), first, "33 and 40 share a class");
        // 40 -> 48 bytes is the same class: no move.
        assert_eq!(a.realloc(second, layout, 48), second);
        // 48 -> 49 is the next class: a move.
        assert_ne!(a.realloc(second, Layout::from_size_align(48, 8).expect("layout"), 49), second);
    }
    assert_eq!(class(1), (0, 16));
    assert_eq!(class(256), (15, 256));
    assert_eq!(class(257), (16, 512));
    assert_eq!(class(LARGEST), (17, LARGEST));
}

/// The system allocator, recording the sizes asked of it and refusing any of `refuse_from`
/// bytes or more: with [`FIRST_CHUNK`] there, what a class sees when the block is near its memory
/// limit.
struct Backing {
    refuse_from: usize,
    asked: RefCell<Vec<usize>>,
}

impl Backing {
    fn refusing_from(refuse_from: usize) -> Self {
        Backing { refuse_from, asked: RefCell::new(Vec::new()) }
    }
}

// SAFETY: the tests use it from one thread.
unsafe impl Sync for Backing {}

unsafe impl GlobalAlloc for Backing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.asked.borrow_mut().push(layout.size());
        if layout.size() >= self.refuse_from {
            return std::ptr::null_mut();
        }
        // SAFETY: passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: passed on.
        unsafe { System.dealloc(block, layout) }
    }
}

#[test]
fn without_room_for_a_chunk_a_small_request_still_succeeds() {
    let a = Allocator::new(Backing::refusing_from(FIRST_CHUNK));
    let layout = Layout::from_size_align(24, 8).expect("layout");
    // SAFETY: a valid layout.
    let block = unsafe { a.alloc(layout) };
    assert!(!block.is_null());
    assert!(a.large.asked.borrow().iter().any(|&n| n >= FIRST_CHUNK), "a chunk was asked for first");
    // SAFETY: live, with its layout.
    unsafe { a.dealloc(block, layout) };
}

#[test]
fn chunks_start_small_and_double_up_to_their_bound() {
    let a = Allocator::new(Backing::refusing_from(usize::MAX));
    let layout = Layout::from_size_align(LARGEST, 8).expect("layout");
    // Enough 1 KiB blocks for several refills; none freed.
    for _ in 0..(FIRST_CHUNK + 2 * CHUNK) / LARGEST {
        // SAFETY: a valid layout; the blocks are leaked on purpose.
        assert!(!unsafe { a.alloc(layout) }.is_null());
    }
    let asked = a.large.asked.borrow();
    let mut want = vec![FIRST_CHUNK];
    while want.len() < asked.len() {
        want.push((want[want.len() - 1] * 2).min(CHUNK));
    }
    assert_eq!(*asked, want, "an idle block takes {FIRST_CHUNK} bytes; busier ones take more at once");
    assert_eq!(asked.last(), Some(&CHUNK));
}
