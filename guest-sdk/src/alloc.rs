//! The block's memory allocator (the `talc` feature, on by default).
//!
//! Every bag a block reads or writes is a tree of small allocations (its keys, its strings), so
//! the allocator is a large part of a block's own time. Rust's default for wasm is dlmalloc;
//! talc does the same job in fewer instructions. It grows linear memory with `memory.grow` as
//! dlmalloc does, so a block that outgrows its memory budget still fails an allocation, which
//! aborts (a trap): the host ends that block only, as before.
//!
//! A block that wants its own `#[global_allocator]` turns the SDK's default features off.

#[cfg(all(not(target_feature = "atomics"), target_family = "wasm"))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
