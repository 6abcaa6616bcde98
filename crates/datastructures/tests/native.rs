//! The native build: private library copies, the reported layout, and batches on the host heap.

use kflex_datastructures::native::NativeInstance;
use kflex_datastructures::protocol::{BATCH_MAX, INSERTED, Op, REPLACED};
use kflex_datastructures::{Driver, OpKind, Structure};

fn op(k: u8, v: u8) -> Op {
    let mut o = Op::default();
    o.key[0] = k;
    o.key[31] = k;
    o.value = [v; 64];
    o
}

#[test]
fn instances_of_one_structure_do_not_share_globals() {
    let mut a = NativeInstance::new(Structure::Hash).expect("hash");
    let mut b = NativeInstance::new(Structure::Hash).expect("hash");
    assert_ne!(a.init_ctx().mailbox, b.init_ctx().mailbox);
    a.mailbox()[0] = op(1, 10);
    assert_eq!(a.run(OpKind::Update, 1).unwrap(), 1);
    assert_eq!(a.mailbox()[0].result, INSERTED);
    // The same key is new to the second instance, and absent there.
    b.mailbox()[0] = op(1, 20);
    assert_eq!(b.run(OpKind::Lookup, 1).unwrap(), 0);
    assert_eq!(b.run(OpKind::Update, 1).unwrap(), 1);
    // In the first instance the key exists: replaced.
    a.mailbox()[0] = op(1, 30);
    assert_eq!(a.run(OpKind::Update, 1).unwrap(), 1);
    assert_eq!(a.mailbox()[0].result, REPLACED);
}

#[test]
fn init_reports_a_layout_covering_mailbox_and_allocator() {
    for s in [Structure::List, Structure::Hash, Structure::Lru] {
        let n = NativeInstance::new(s).expect("native instance");
        let ctx = n.init_ctx();
        let mailbox = ctx.mailbox..ctx.mailbox + (BATCH_MAX * size_of::<Op>()) as u64;
        let globals = ctx.globals..ctx.globals + ctx.globals_size;
        assert!(
            globals.start <= mailbox.start && mailbox.end <= globals.end,
            "{s}: {ctx:?}"
        );
        assert!(globals.contains(&ctx.alloc_state), "{s}: {ctx:?}");
        assert_eq!(ctx.ret, 0);
    }
}

#[test]
fn a_batch_returns_how_many_ops_succeeded() {
    let mut d = NativeInstance::new(Structure::List).expect("list");
    for (i, o) in d.mailbox()[..3].iter_mut().enumerate() {
        *o = op(i as u8 % 2, 1);
    }
    // Keys 0, 1, 0: two inserts and one replace, all > 0.
    assert_eq!(d.run(OpKind::Update, 3).unwrap(), 3);
    let results: Vec<i64> = d.mailbox()[..3].iter().map(|o| o.result).collect();
    assert_eq!(results, [INSERTED, INSERTED, REPLACED]);
    assert!(d.run(OpKind::Update, BATCH_MAX + 1).is_err());
}
