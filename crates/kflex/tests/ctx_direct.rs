//! Direct context accesses (`kflex_jit::CtxDirect` over `kflex_hooks::PreparedRun::direct_context`)
//! give exactly what the context hook gives, for every access the layout rules allow, on every
//! program type; stores through either path leave the same context behind.

use kflex::ProgType;
use kflex::packet;
use kflex_hooks::{DirectKind, PreparedRun, TestRunInput, check_ctx_access, prepare};
use kflex_jit::{CtxAccess, ctx_direct::kind};
use kflex_runtime::{Access, MemoryMap};

const PACKET_TYPES: [ProgType; 4] = [
    ProgType::Xdp,
    ProgType::SocketFilter,
    ProgType::SchedCls,
    ProgType::SkSkb,
];

fn prepared(ty: ProgType) -> (PreparedRun, MemoryMap) {
    let frame = packet::udp4_frame([10, 0, 0, 1], [10, 0, 0, 2], 1234, 53, b"payload");
    let input = TestRunInput {
        data_in: frame,
        ctx_in: None,
    };
    let mut run = prepare(ty, &input).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled by `finish` below before the run is finished.
    unsafe { run.install(&mut mem).unwrap() };
    (run, mem)
}

fn finish(run: PreparedRun, mut mem: MemoryMap) -> kflex_hooks::TestRunOutput {
    run.uninstall(&mut mem);
    run.finish()
}

fn allowed(ty: ProgType, offset: u64, size: u8, access: Access) -> bool {
    check_ctx_access(ty, offset, size, access).is_ok()
}

#[test]
fn the_kind_values_agree_between_hooks_and_jit() {
    assert_eq!(DirectKind::Hook as u8, kind::HOOK);
    assert_eq!(DirectKind::Plain as u8, kind::PLAIN);
    assert_eq!(DirectKind::Data as u8, kind::DATA);
    assert_eq!(DirectKind::DataEnd as u8, kind::DATA_END);
    assert_eq!(DirectKind::DataMeta as u8, kind::DATA_META);
    assert_eq!(DirectKind::Null as u8, kind::NULL);
}

#[test]
fn direct_loads_equal_hook_loads_for_every_readable_field() {
    for ty in PACKET_TYPES {
        let (mut run, mem) = prepared(ty);
        let direct = direct_of(&run);
        let mut served = 0;
        for offset in 0..200u64 {
            for size in [1u8, 2, 4, 8] {
                if !allowed(ty, offset, size, Access::Read) {
                    continue;
                }
                let access = CtxAccess {
                    pc: 0,
                    offset: offset as u32,
                    size,
                    write: false,
                };
                let hook = run.context_access().load(offset, size).unwrap();
                if let Some(v) = direct.serve(&access, 0) {
                    assert_eq!(v, hook, "{ty:?} {size}-byte load at {offset}");
                    served += 1;
                }
            }
        }
        assert!(served > 0, "{ty:?}: some loads are direct");
        finish(run, mem);
    }
}

#[test]
fn direct_stores_leave_the_context_the_hook_would() {
    for ty in PACKET_TYPES {
        let (mut by_hook, mem_h) = prepared(ty);
        let (by_direct, mem_d) = prepared(ty);
        let direct = direct_of(&by_direct);
        let mut value = 0x1122_3344_5566_7788u64;
        for offset in 0..200u64 {
            for size in [1u8, 2, 4, 8] {
                if !allowed(ty, offset, size, Access::Write) {
                    continue;
                }
                value = value.rotate_left(8) ^ offset;
                let access = CtxAccess {
                    pc: 0,
                    offset: offset as u32,
                    size,
                    write: true,
                };
                if direct.serve(&access, value).is_some() {
                    by_hook.context_access().store(offset, size, value).unwrap();
                }
            }
        }
        assert_eq!(finish(by_hook, mem_h), finish(by_direct, mem_d), "{ty:?}");
    }
}

#[test]
fn packet_pointers_follow_a_moved_head() {
    let (mut run, mut mem) = prepared(ProgType::Xdp);
    let direct = direct_of(&run);
    let data = CtxAccess {
        pc: 0,
        offset: 0,
        size: 4,
        write: false,
    };
    let before = direct.serve(&data, 0).unwrap();
    assert_eq!(before, run.context_access().load(0, 4).unwrap());
    // bpf_xdp_adjust_head(ctx, 4) through the hooks' own helper.
    let registry = {
        let mut r = kflex_runtime::HelperRegistry::empty();
        for h in kflex_hooks::extra_helpers(ProgType::Xdp) {
            r.register(h).unwrap();
        }
        r
    };
    let adjust = registry.get(kflex_hooks::BPF_FUNC_XDP_ADJUST_HEAD).unwrap();
    let mut env = kflex_runtime::ExecEnv::default();
    let mut call = kflex_runtime::HelperCall {
        args: [run.ctx_address(), 4, 0, 0, 0],
        mem: &mut mem,
        env: &mut env,
    };
    assert_eq!((adjust.func)(&mut call).unwrap(), 0);
    let after = direct.serve(&data, 0).unwrap();
    assert_eq!(after, before + 4);
    assert_eq!(after, run.context_access().load(0, 4).unwrap());
    finish(run, mem);
}

fn direct_of(run: &PreparedRun) -> kflex_jit::CtxDirect {
    let d = run.direct_context();
    // SAFETY: the run stays installed (alive, unmoved) for as long as the test uses the result.
    unsafe { kflex_jit::CtxDirect::new(d.image, d.len, d.pointers, d.loads, d.stores, d.uniform) }
}
