//! trace_printk, clocks, prandom, CPU id, the registry itself, and host-registered helpers.

mod common;

use std::sync::Arc;

use common::*;
use kflex_runtime::helpers::{
    ArgKind, HelperCall, HelperDef, HelperError, RegistryError, ResourceKind, RetKind, Signature,
    ids,
};
use kflex_runtime::{ExecEnv, HelperRegistry};

#[test]
fn trace_printk_formats_and_collects_lines() {
    let mut f = Fixture::new();
    let name = f.put(64, b"kflex\0");
    let fmt = f.put(0, b"hello %s: %d/%lx\n\0");
    let r = f.call(ids::TRACE_PRINTK, &[fmt, 19, name, (-3i64) as u64, 0xbeef]);
    let line = "hello kflex: -3/beef";
    assert_eq!(
        r,
        Ok(line.len() as u64 + 1),
        "returns bytes written including the newline"
    );
    assert_eq!(f.env.trace, vec![line.to_string()]);

    // The size may extend past the NUL; the string ends at the NUL.
    let fmt2 = f.put(128, b"%u%%\0junk");
    assert_eq!(f.call(ids::TRACE_PRINTK, &[fmt2, 9, 42]), Ok(3));
    assert_eq!(f.env.trace.last().unwrap(), "42%");
}

#[test]
fn trace_printk_refusals() {
    let mut f = Fixture::new();
    let no_nul = f.put(0, b"abc");
    assert_eq!(
        f.call(ids::TRACE_PRINTK, &[no_nul, 3]),
        Ok(neg(libc::EINVAL))
    );
    let four = f.put(16, b"%d %d %d %d\0");
    assert_eq!(
        f.call(ids::TRACE_PRINTK, &[four, 12]),
        Ok(neg(libc::EINVAL))
    );
    let bad = f.put(32, b"%n\0");
    assert_eq!(f.call(ids::TRACE_PRINTK, &[bad, 3]), Ok(neg(libc::EINVAL)));
    assert_eq!(f.call(ids::TRACE_PRINTK, &[bad, 0]), Ok(neg(libc::EINVAL)));
    assert!(f.env.trace.is_empty());
    // The format pointer itself is checked.
    assert!(matches!(
        f.call(ids::TRACE_PRINTK, &[0x40, 4]),
        Err(HelperError::Memory(_))
    ));
    let end = f.stack + STACK_LEN as u64 - 2;
    assert!(matches!(
        f.call(ids::TRACE_PRINTK, &[end, 4]),
        Err(HelperError::Memory(_))
    ));
    // A %s argument pointing nowhere prints as an empty string.
    let s = f.put(48, b"[%s]\0");
    assert_eq!(f.call(ids::TRACE_PRINTK, &[s, 5, 0xdead]), Ok(2));
    assert_eq!(f.env.trace, vec!["[]".to_string()]);
}

#[test]
fn prandom_cpu_and_clocks() {
    let mut f = Fixture::new();
    f.env.seed_prandom(99);
    let a: Vec<u64> = (0..4)
        .map(|_| f.call(ids::GET_PRANDOM_U32, &[]).unwrap())
        .collect();
    f.env.seed_prandom(99);
    let b: Vec<u64> = (0..4)
        .map(|_| f.call(ids::GET_PRANDOM_U32, &[]).unwrap())
        .collect();
    assert_eq!(a, b);
    assert!(a.iter().all(|&x| x <= u32::MAX as u64));
    assert!(a.windows(2).any(|w| w[0] != w[1]));

    f.env.cpu = 3;
    assert_eq!(f.call(ids::GET_SMP_PROCESSOR_ID, &[]), Ok(3));

    let t0 = f.call(ids::KTIME_GET_NS, &[]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let t1 = f.call(ids::KTIME_GET_NS, &[]).unwrap();
    assert!(t1 - t0 >= 2_000_000);
    let boot = f.call(ids::KTIME_GET_BOOT_NS, &[]).unwrap();
    assert!(boot >= t0);
}

#[test]
fn registry_has_linux_numbers_names_and_signatures() {
    let r = HelperRegistry::linux_default();
    let want = [
        (1, "bpf_map_lookup_elem"),
        (2, "bpf_map_update_elem"),
        (3, "bpf_map_delete_elem"),
        (5, "bpf_ktime_get_ns"),
        (6, "bpf_trace_printk"),
        (7, "bpf_get_prandom_u32"),
        (8, "bpf_get_smp_processor_id"),
        (93, "bpf_spin_lock"),
        (94, "bpf_spin_unlock"),
        (125, "bpf_ktime_get_boot_ns"),
        (130, "bpf_ringbuf_output"),
        (131, "bpf_ringbuf_reserve"),
        (132, "bpf_ringbuf_submit"),
        (133, "bpf_ringbuf_discard"),
        (134, "bpf_ringbuf_query"),
    ];
    let got: Vec<(u32, &str)> = r.iter().map(|d| (d.id, d.name.as_str())).collect();
    assert_eq!(got, want);
    let reserve = &r.get(131).unwrap().sig;
    assert_eq!(reserve.acquires, Some(ResourceKind::RingbufSample));
    assert_eq!(reserve.ret, RetKind::MemOrNull { size_arg: 1 });
    assert_eq!(r.get(132).unwrap().sig.releases, Some(0));
    assert_eq!(r.get(1).unwrap().sig.ret, RetKind::MapValueOrNull);
    assert_eq!(
        r.get(6).unwrap().sig.args[..2],
        [
            ArgKind::MemRead { size_arg: 1 },
            ArgKind::MemSize { zero_ok: false }
        ]
    );
}

/// A host helper: sums `len` bytes at r1 (a typed `MemRead` argument).
fn host_sum() -> HelperDef {
    HelperDef {
        id: 0x1000,
        name: "host_sum".into(),
        sig: Signature::new(
            &[
                ArgKind::MemRead { size_arg: 1 },
                ArgKind::MemSize { zero_ok: false },
            ],
            RetKind::Scalar,
        ),
        func: Arc::new(|c: &mut HelperCall<'_>| {
            let bytes = c.mem.read_bytes(c.args[0], c.args[1])?;
            Ok(bytes.iter().map(|&b| b as u64).sum())
        }),
    }
}

#[test]
fn host_helper_with_mem_read_is_dispatched() {
    let mut f = Fixture::new();
    f.reg.register(host_sum()).unwrap();
    assert!(matches!(
        f.reg.register(host_sum()),
        Err(RegistryError::Duplicate { id: 0x1000, .. })
    ));
    let p = f.put(0, &[1, 2, 3, 250]);
    assert_eq!(f.call(0x1000, &[p, 4]), Ok(256));
    assert!(matches!(
        f.call(0x1000, &[p, 4096]),
        Err(HelperError::Memory(_))
    ));
    assert!(matches!(
        f.call(0x1000, &[8, 1]),
        Err(HelperError::Memory(_))
    ));
    // Works without maps too.
    let mut env = ExecEnv::default();
    let def = f.reg.get(0x1000).unwrap().clone();
    let mut c = HelperCall {
        args: [p, 2, 0, 0, 0],
        mem: &mut f.mem,
        env: &mut env,
    };
    assert_eq!((def.func)(&mut c), Ok(3));
}
