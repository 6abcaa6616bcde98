//! Helper-call rules against a small mock state: every argument kind, map type rules, references,
//! locks, return values and scratching.

use std::sync::Arc;

use kflex_isa::Insn;
use kflex_isa::decode::Program;
use kflex_isa::op;
use kflex_object::{GlobalKind, MapSpec, MapType, ProgType};
use kflex_runtime::HelperRegistry;
use kflex_runtime::helpers::{ArgKind, HelperCall, HelperDef, HelperError, Signature};

use super::*;
use crate::Location;
use crate::check::resources::{Resources, check_exit_resources};

struct Mock {
    regs: [ArgVal; 11],
    init: Vec<bool>,
    res: Resources,
    next: u32,
    r0: Option<RetVal>,
    invalidated: Vec<u32>,
}

impl Mock {
    fn new() -> Self {
        let mut regs: [ArgVal; 11] = std::array::from_fn(|_| ArgVal::Uninit);
        regs[10] = ArgVal::Stack {
            frame: 0,
            min: 0,
            max: 0,
        };
        Mock {
            regs,
            init: vec![false; 512],
            res: Resources::default(),
            next: 1,
            r0: None,
            invalidated: vec![],
        }
    }
    fn set(&mut self, r: usize, v: ArgVal) -> &mut Self {
        self.regs[r] = v;
        self
    }
    fn init_stack(&mut self, off: i64, len: usize) {
        let start = (512 + off) as usize;
        self.init[start..start + len]
            .iter_mut()
            .for_each(|b| *b = true);
    }
}

impl ResourceView for Mock {
    fn resources(&self) -> &Resources {
        &self.res
    }
    fn ref_holders(&self) -> Vec<(Location, u32)> {
        (0..10u8)
            .filter_map(|r| match self.regs[r as usize] {
                ArgVal::Mem {
                    ref_id: Some(id), ..
                }
                | ArgVal::HostRef { ref_id: id, .. } => Some((Location::Reg(r), id)),
                _ => None,
            })
            .collect()
    }
    fn lock_holders(&self) -> Vec<(Location, LockTarget)> {
        Vec::new()
    }
}

impl CallState for Mock {
    fn arg(&self, reg: u8) -> ArgVal {
        self.regs[reg as usize].clone()
    }
    fn stack_initialised(&self, _frame: u8, off: i64, len: u64) -> Result<(), i64> {
        for o in off..off + len as i64 {
            if !self.init[(512 + o) as usize] {
                return Err(o);
            }
        }
        Ok(())
    }
    fn mark_stack_written(&mut self, _frame: u8, off: i64, len: u64) {
        self.init_stack(off, len as usize);
    }
    fn fresh_id(&mut self) -> u32 {
        self.next += 1;
        self.next
    }
    fn resources_mut(&mut self) -> &mut Resources {
        &mut self.res
    }
    fn invalidate_ref(&mut self, id: u32) {
        self.invalidated.push(id);
        for r in self.regs.iter_mut() {
            if matches!(r, ArgVal::Mem { ref_id: Some(x), .. } if *x == id) {
                *r = ArgVal::Uninit;
            }
        }
    }
    fn set_r0(&mut self, r0: RetVal) {
        self.r0 = Some(r0);
    }
    fn scratch_args(&mut self) {
        for r in 1..=5 {
            self.regs[r] = ArgVal::Uninit;
        }
    }
    fn describe(&self) -> String {
        "R10=fp0".to_string()
    }
}

fn spec(name: &str, t: MapType, key: u32, value: u32) -> MapSpec {
    MapSpec::new(name, t, key, value, 4)
}

const HASH: u32 = 0;
const RB: u32 = 1;
const RODATA: u32 = 2;
const ARENA: u32 = 3;
const LOCKED: u32 = 4;

fn maps() -> Vec<MapSpec> {
    let mut ro = spec(".rodata", MapType::Array, 4, 8);
    ro.global = Some(GlobalKind::Rodata);
    ro.initial_value = Some(b"hi %d\0ab".to_vec());
    vec![
        spec("hash", MapType::Hash, 4, 8),
        spec("rb", MapType::Ringbuf, 0, 0),
        ro,
        spec("arena", MapType::Arena, 0, 0),
        spec("locked", MapType::Array, 4, 16),
    ]
}

fn registry() -> HelperRegistry {
    let mut r = HelperRegistry::linux_default();
    let noop = |_: &mut HelperCall<'_>| -> Result<u64, HelperError> { Ok(0) };
    let sock = ResourceKind::Host("socket");
    r.register(HelperDef {
        id: 1001,
        name: "host_sock_get".into(),
        sig: Signature::new(&[ArgKind::Scalar], RetKind::Scalar).acquires(sock),
        func: Arc::new(noop),
    })
    .unwrap();
    r.register(HelperDef {
        id: 1002,
        name: "host_sock_put".into(),
        sig: Signature::new(&[ArgKind::Ref(sock)], RetKind::Void).releases(0),
        func: Arc::new(noop),
    })
    .unwrap();
    r.register(HelperDef {
        id: 1003,
        name: "host_ctx_len".into(),
        sig: Signature::new(&[ArgKind::Ctx], RetKind::Scalar),
        func: Arc::new(noop),
    })
    .unwrap();
    r.register(HelperDef {
        id: 1004,
        name: "host_log".into(),
        sig: Signature::new(&[ArgKind::ConstStr], RetKind::Scalar).under_lock(),
        func: Arc::new(noop),
    })
    .unwrap();
    r.register(HelperDef {
        id: 1005,
        name: "host_fill".into(),
        sig: Signature::new(
            &[
                ArgKind::MemWrite { size_arg: 1 },
                ArgKind::MemSize { zero_ok: false },
            ],
            RetKind::Scalar,
        ),
        func: Arc::new(noop),
    })
    .unwrap();
    r
}

struct Fx {
    prog: Program,
    maps: Vec<MapSpec>,
    reg: HelperRegistry,
    line: Vec<kflex_object::LineInfo>,
}

impl Fx {
    fn new() -> Self {
        let call = Insn::new(op::JMP | op::CALL, 0, 0, 0, 1);
        let exit = Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0);
        let line = vec![kflex_object::LineInfo {
            insn: 0,
            file: "t.c".into(),
            line: 7,
            column: 1,
            source: "v = lookup(&m, &k);".into(),
        }];
        Fx {
            prog: Program::decode(&[call, exit]).unwrap(),
            maps: maps(),
            reg: registry(),
            line,
        }
    }
    fn call(&self, st: &mut Mock, id: u32) -> Result<(), Box<VerifyError>> {
        let input = VerifyInput {
            program: &self.prog,
            prog_type: ProgType::Xdp,
            maps: &self.maps,
            helpers: &self.reg,
            line_info: &self.line,
            func_info: &[],
        };
        check_helper_call(st, 0, self.reg.get(id).unwrap(), &input)
    }
    fn rule(&self, st: &mut Mock, id: u32) -> String {
        let e = self.call(st, id).unwrap_err();
        assert_eq!(e.pc, Some(0));
        assert!(!e.hint.is_empty(), "every helper error has a hint: {e}");
        e.rule
    }
}

fn scalar(v: u64) -> ArgVal {
    ArgVal::Scalar { umin: v, umax: v }
}
fn fp(off: i64) -> ArgVal {
    ArgVal::Stack {
        frame: 0,
        min: off,
        max: off,
    }
}
fn mapv(map: u32, off: i64) -> ArgVal {
    ArgVal::MapValue {
        map,
        id: 1,
        min: off,
        max: off,
        nullable: false,
    }
}

fn lookup_state(key_init: bool) -> Mock {
    let mut st = Mock::new();
    st.set(1, ArgVal::MapPtr { map: HASH }).set(2, fp(-8));
    if key_init {
        st.init_stack(-8, 4);
    }
    st
}

#[test]
fn lookup_accepted_returns_nullable_value_and_scratches() {
    let fx = Fx::new();
    let mut st = lookup_state(true);
    fx.call(&mut st, ids::MAP_LOOKUP_ELEM).unwrap();
    assert!(matches!(
        st.r0,
        Some(RetVal::MapValueOrNull { map: HASH, .. })
    ));
    assert!((1..=5).all(|r| st.regs[r] == ArgVal::Uninit));
}

#[test]
fn map_key_must_be_initialised_and_in_bounds() {
    let fx = Fx::new();
    let r = fx.rule(&mut lookup_state(false), ids::MAP_LOOKUP_ELEM);
    assert!(
        r.contains("invalid indirect read from stack") && r.contains("not initialised"),
        "{r}"
    );
    let mut st = lookup_state(true);
    st.set(2, fp(-2));
    let r = fx.rule(&mut st, ids::MAP_LOOKUP_ELEM);
    assert!(r.contains("invalid stack read"), "{r}");
    let mut st = lookup_state(true);
    st.set(2, scalar(0));
    assert!(
        fx.rule(&mut st, ids::MAP_LOOKUP_ELEM)
            .contains("expected=pointer to memory")
    );
}

#[test]
fn map_pointer_argument_kind() {
    let fx = Fx::new();
    let mut st = lookup_state(true);
    st.set(1, scalar(5));
    let r = fx.rule(&mut st, ids::MAP_LOOKUP_ELEM);
    assert!(r.contains("R1 type=scalar expected=a map pointer"), "{r}");
    let mut st = lookup_state(true);
    st.set(1, ArgVal::Uninit);
    assert!(
        fx.rule(&mut st, ids::MAP_LOOKUP_ELEM)
            .contains("R1 !read_ok")
    );
}

#[test]
fn map_value_argument_checks_value_size_and_null() {
    let fx = Fx::new();
    let mut st = lookup_state(true);
    st.set(3, mapv(LOCKED, 8)).set(4, scalar(0));
    fx.call(&mut st, ids::MAP_UPDATE_ELEM).unwrap();
    let mut st = lookup_state(true);
    st.set(3, mapv(LOCKED, 12)).set(4, scalar(0));
    assert!(
        fx.rule(&mut st, ids::MAP_UPDATE_ELEM)
            .contains("the value is 16 bytes")
    );
    let mut st = lookup_state(true);
    st.set(
        3,
        ArgVal::MapValue {
            map: LOCKED,
            id: 1,
            min: 0,
            max: 0,
            nullable: true,
        },
    )
    .set(4, scalar(0));
    let e = fx.call(&mut st, ids::MAP_UPDATE_ELEM).unwrap_err();
    assert!(
        e.rule.contains("may be NULL") && e.hint.contains("bpf_map_lookup_elem against NULL"),
        "{e}"
    );
}

#[test]
fn map_type_rules_as_linux() {
    let fx = Fx::new();
    let mut st = lookup_state(true);
    st.set(1, ArgVal::MapPtr { map: RB });
    let r = fx.rule(&mut st, ids::MAP_LOOKUP_ELEM);
    assert!(r.contains("cannot be used on ringbuf map rb"), "{r}");
    let mut st = Mock::new();
    st.set(1, ArgVal::MapPtr { map: HASH })
        .set(2, scalar(8))
        .set(3, scalar(0));
    let r = fx.rule(&mut st, ids::RINGBUF_RESERVE);
    assert!(r.contains("needs a ring buffer map"), "{r}");
    let mut st = lookup_state(true);
    st.set(1, ArgVal::MapPtr { map: ARENA });
    assert!(fx.rule(&mut st, ids::MAP_DELETE_ELEM).contains("arena"));
}

#[test]
fn mem_read_size_rules() {
    let fx = Fx::new();
    let mut st = Mock::new();
    st.init_stack(-16, 16);
    st.set(1, fp(-16)).set(2, scalar(16));
    fx.call(&mut st, ids::TRACE_PRINTK).unwrap();
    let mut st = Mock::new();
    st.init_stack(-16, 16);
    st.set(1, fp(-16))
        .set(2, ArgVal::Scalar { umin: 0, umax: 16 });
    assert!(fx.rule(&mut st, ids::TRACE_PRINTK).contains("zero-sized"));
    st.set(1, fp(-16))
        .set(2, ArgVal::Scalar { umin: 1, umax: 17 });
    assert!(
        fx.rule(&mut st, ids::TRACE_PRINTK)
            .contains("invalid stack read of 17 bytes")
    );
    st.set(1, fp(-16)).set(
        2,
        ArgVal::Scalar {
            umin: 1,
            umax: u64::MAX,
        },
    );
    assert!(fx.rule(&mut st, ids::TRACE_PRINTK).contains("unbounded"));
    st.set(1, fp(-16)).set(2, fp(-8));
    assert!(
        fx.rule(&mut st, ids::TRACE_PRINTK)
            .contains("R2 type=fp expected=scalar")
    );
    // Packet memory needs a proved range covering the size.
    st.set(
        1,
        ArgVal::Packet {
            min: 0,
            max: 0,
            range: 8,
        },
    )
    .set(2, scalar(14));
    let e = fx.call(&mut st, ids::TRACE_PRINTK).unwrap_err();
    assert!(e.hint.contains("compare data + 14 against data_end"), "{e}");
    // ringbuf_output accepts a zero size.
    let mut st = Mock::new();
    st.set(1, ArgVal::MapPtr { map: RB })
        .set(2, fp(-8))
        .set(3, scalar(0))
        .set(4, scalar(0));
    fx.call(&mut st, ids::RINGBUF_OUTPUT).unwrap();
}

#[test]
fn mem_write_marks_stack_initialised() {
    let fx = Fx::new();
    let mut st = Mock::new();
    st.set(1, fp(-32)).set(2, scalar(24));
    fx.call(&mut st, 1005).unwrap();
    assert!(st.stack_initialised(0, -32, 24).is_ok());
    assert_eq!(st.stack_initialised(0, -8, 8), Err(-8));
}

#[test]
fn ctx_and_const_str_arguments() {
    let fx = Fx::new();
    let mut st = Mock::new();
    st.set(1, ArgVal::Ctx { off: 0 });
    fx.call(&mut st, 1003).unwrap();
    st.set(1, ArgVal::Ctx { off: 4 });
    assert!(fx.rule(&mut st, 1003).contains("context pointer itself"));
    st.set(1, fp(-8));
    assert!(
        fx.rule(&mut st, 1003)
            .contains("expected=the context pointer")
    );

    st.set(1, mapv(RODATA, 0));
    fx.call(&mut st, 1004).unwrap();
    st.set(1, mapv(RODATA, 6));
    assert!(fx.rule(&mut st, 1004).contains("no NUL terminator"));
    st.set(1, mapv(HASH, 0));
    assert!(
        fx.rule(&mut st, 1004)
            .contains("which the program can write")
    );
}

#[test]
fn ringbuf_reserve_submit_and_release_rules() {
    let fx = Fx::new();
    let mut st = Mock::new();
    st.set(1, ArgVal::MapPtr { map: RB })
        .set(2, ArgVal::Scalar { umin: 1, umax: 8 })
        .set(3, scalar(0));
    assert!(
        fx.rule(&mut st, ids::RINGBUF_RESERVE)
            .contains("R2 is not a known constant")
    );
    st.set(1, ArgVal::MapPtr { map: RB })
        .set(2, scalar(16))
        .set(3, scalar(0));
    fx.call(&mut st, ids::RINGBUF_RESERVE).unwrap();
    let Some(RetVal::MemOrNull {
        size: 16,
        ref_id: Some(rid),
        ..
    }) = st.r0.clone()
    else {
        panic!("{:?}", st.r0)
    };
    assert_eq!(st.res.refs.len(), 1);
    assert_eq!(st.res.refs[0].acquired_at, 0);

    // Not NULL-checked yet.
    st.set(
        1,
        ArgVal::Mem {
            ref_id: Some(rid),
            size: 16,
            min: 0,
            max: 0,
            nullable: true,
        },
    )
    .set(2, scalar(0));
    assert!(
        fx.rule(&mut st, ids::RINGBUF_SUBMIT)
            .contains("may be NULL")
    );
    // Pointer into the sample, not its start.
    st.set(
        1,
        ArgVal::Mem {
            ref_id: Some(rid),
            size: 16,
            min: 8,
            max: 8,
            nullable: false,
        },
    )
    .set(2, scalar(0));
    assert!(
        fx.rule(&mut st, ids::RINGBUF_SUBMIT)
            .contains("start of the reference")
    );
    let sample = ArgVal::Mem {
        ref_id: Some(rid),
        size: 16,
        min: 0,
        max: 0,
        nullable: false,
    };
    st.set(1, sample.clone())
        .set(2, scalar(0))
        .set(6, sample.clone());
    fx.call(&mut st, ids::RINGBUF_SUBMIT).unwrap();
    assert!(st.res.refs.is_empty());
    assert_eq!(st.invalidated, vec![rid]);
    assert_eq!(
        st.regs[6],
        ArgVal::Uninit,
        "copies of the released pointer are invalidated"
    );
    // Releasing twice.
    st.set(1, sample).set(2, scalar(0));
    let r = fx.rule(&mut st, ids::RINGBUF_DISCARD);
    assert!(r.contains("is not held"), "{r}");
    // Releasing something never acquired.
    st.set(1, fp(-8)).set(2, scalar(0));
    assert!(
        fx.rule(&mut st, ids::RINGBUF_SUBMIT)
            .contains("must be an acquired ringbuf sample reference")
    );
}

#[test]
fn host_resources_acquire_release_and_leak() {
    let fx = Fx::new();
    let sock = ResourceKind::Host("socket");
    let mut st = Mock::new();
    st.set(1, scalar(3));
    fx.call(&mut st, 1001).unwrap();
    let Some(RetVal::HostRefOrNull { ref_id, kind, .. }) = st.r0.clone() else {
        panic!()
    };
    assert_eq!(kind, sock);
    let e = check_exit_resources(&st.res).unwrap_err();
    assert!(
        e.contains("host socket") && e.contains("acquired at instruction 0"),
        "{e}"
    );
    st.set(
        1,
        ArgVal::HostRef {
            ref_id,
            kind: sock,
            nullable: false,
        },
    );
    fx.call(&mut st, 1002).unwrap();
    assert!(check_exit_resources(&st.res).is_ok());
    st.set(
        1,
        ArgVal::HostRef {
            ref_id,
            kind: sock,
            nullable: false,
        },
    );
    assert!(fx.rule(&mut st, 1002).contains("not held"));
    st.set(
        1,
        ArgVal::HostRef {
            ref_id: 77,
            kind: ResourceKind::Host("file"),
            nullable: false,
        },
    );
    assert!(fx.rule(&mut st, 1002).contains("expected=host socket"));
}

#[test]
fn locks_several_at_once_released_in_reverse_order() {
    let fx = Fx::new();
    let mut st = Mock::new();
    st.set(1, mapv(LOCKED, 0));
    fx.call(&mut st, ids::SPIN_LOCK).unwrap();
    st.set(1, ArgVal::Heap { off: Some(64) });
    fx.call(&mut st, ids::SPIN_LOCK).unwrap();
    assert_eq!(st.res.locks.len(), 2);
    assert!(
        check_exit_resources(&st.res)
            .unwrap_err()
            .contains("holding")
    );
    st.set(1, ArgVal::Heap { off: Some(64) });
    fx.call(&mut st, ids::SPIN_UNLOCK).unwrap();
    st.set(1, mapv(LOCKED, 0));
    fx.call(&mut st, ids::SPIN_UNLOCK).unwrap();
    assert!(check_exit_resources(&st.res).is_ok());
    assert_eq!(st.r0, Some(RetVal::Zero));
}

#[test]
fn locks_in_two_elements_of_one_map_are_two_locks() {
    let fx = Fx::new();
    let mut st = Mock::new();
    let elem = |id| ArgVal::MapValue {
        map: LOCKED,
        id,
        min: 0,
        max: 0,
        nullable: false,
    };
    st.set(1, elem(7));
    fx.call(&mut st, ids::SPIN_LOCK).unwrap();
    st.set(1, elem(8));
    fx.call(&mut st, ids::SPIN_LOCK).unwrap();
    assert_eq!(st.res.locks.len(), 2, "same map and offset, two elements");
    st.set(1, elem(7));
    assert!(fx.rule(&mut st, ids::SPIN_LOCK).contains("deadlock"));
    st.set(1, elem(7));
    fx.call(&mut st, ids::SPIN_UNLOCK).unwrap();
    st.set(1, elem(7));
    let r = fx.rule(&mut st, ids::SPIN_UNLOCK);
    assert!(r.contains("not held") && r.contains("id=8"), "{r}");
    st.set(1, elem(8));
    fx.call(&mut st, ids::SPIN_UNLOCK).unwrap();
    assert!(check_exit_resources(&st.res).is_ok());
}

#[test]
fn lock_rules() {
    let fx = Fx::new();
    let mut st = Mock::new();
    st.set(1, mapv(LOCKED, 0));
    let r = fx.rule(&mut st, ids::SPIN_UNLOCK);
    assert!(r.contains("no lock is held"), "{r}");
    st.set(1, mapv(LOCKED, 2));
    assert!(
        fx.rule(&mut st, ids::SPIN_LOCK)
            .contains("aligned 4-byte word")
    );
    st.set(
        1,
        ArgVal::MapValue {
            map: LOCKED,
            id: 1,
            min: 0,
            max: 0,
            nullable: true,
        },
    );
    assert!(fx.rule(&mut st, ids::SPIN_LOCK).contains("may be NULL"));
    st.set(1, fp(-8));
    assert!(
        fx.rule(&mut st, ids::SPIN_LOCK)
            .contains("struct bpf_spin_lock")
    );
    st.set(1, mapv(LOCKED, 0));
    fx.call(&mut st, ids::SPIN_LOCK).unwrap();
    st.set(1, mapv(LOCKED, 0));
    assert!(fx.rule(&mut st, ids::SPIN_LOCK).contains("deadlock"));
    st.set(1, mapv(LOCKED, 4));
    assert!(
        fx.rule(&mut st, ids::SPIN_UNLOCK)
            .contains("which is not held")
    );
}

#[test]
fn helpers_under_a_lock_only_if_allowed() {
    let fx = Fx::new();
    let mut st = Mock::new();
    st.set(1, mapv(LOCKED, 0));
    fx.call(&mut st, ids::SPIN_LOCK).unwrap();
    let e = fx.call(&mut st, ids::KTIME_GET_NS).unwrap_err();
    assert!(
        e.rule
            .contains("bpf_ktime_get_ns may not be called while holding a lock"),
        "{e}"
    );
    assert!(e.hint.contains("bpf_spin_unlock"), "{e}");
    st.set(1, mapv(RODATA, 0));
    fx.call(&mut st, 1004).unwrap();
}

#[test]
fn errors_carry_instruction_source_state_and_hint() {
    let fx = Fx::new();
    let e = fx
        .call(&mut lookup_state(false), ids::MAP_LOOKUP_ELEM)
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("at instruction 0: call 0x1"), "{text}");
    assert!(
        text.contains("source: t.c:7: v = lookup(&m, &k);"),
        "{text}"
    );
    assert!(text.contains("state: R10=fp0"), "{text}");
    assert!(text.contains("hint: initialise the"), "{text}");
}

#[test]
fn unknown_helper_names_id_program_type_and_nearby() {
    let fx = Fx::new();
    let input = VerifyInput {
        program: &fx.prog,
        prog_type: ProgType::Xdp,
        maps: &fx.maps,
        helpers: &fx.reg,
        line_info: &[],
        func_info: &[],
    };
    let e = unknown_helper(&input, 0, 4, None);
    assert!(
        e.rule.contains("unknown helper #4") && e.rule.contains("xdp programs"),
        "{e}"
    );
    assert!(
        e.hint.contains("bpf_ktime_get_ns (#5)") && e.hint.contains("bpf_map_delete_elem (#3)"),
        "{e}"
    );
}
