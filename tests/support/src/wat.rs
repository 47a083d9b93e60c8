//! Block components written in WAT: a core module that implements the `block` world's lifecycle
//! (init and finish answer `ok`, run does nothing) with whatever declarations a test adds, turned
//! into a component here. For fixtures no Rust guest can be: many memories, many or huge tables.

use crate::workspace_root;

/// A block component whose core module also declares `extra` (WAT module fields, e.g.
/// `(memory 64)` or `(table 100000 funcref)`).
pub fn wat_block(extra: &str) -> Vec<u8> {
    let core = format!(
        r#"(module
  (memory (export "memory") 1)
  {extra}
  (global $heap (mut i32) (i32.const 1024))
  ;; A bump allocator: enough for the host to hand `init` its config.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $at) (local.get 3)))
    (local.get $at))
  ;; result<_, string>: tag 0 (ok) in a return area at 16.
  (func (export "bagpipe:block/lifecycle@0.1.0#init") (param i32 i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16))
  (func (export "bagpipe:block/lifecycle@0.1.0#run"))
  (func (export "bagpipe:block/lifecycle@0.1.0#finish") (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16)))"#
    );
    let mut module = wat::parse_str(&core).unwrap_or_else(|e| panic!("the fixture's WAT: {e}"));
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(workspace_root().join("wit")).expect("the project's WIT");
    let world = resolve.select_world(&[package], Some("block")).expect("the block world");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("embedding the world");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("componentizing the fixture: {e:#}"))
}
