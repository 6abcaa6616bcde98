//! The machine code of map helper calls compiled against their map, disassembled with iced-x86:
//! the handle check, the branch-free inline array and per-CPU array look-ups (stride by shift or
//! multiply), the direct hash map calls, and the ordinary helper call where no plan applies.

mod map_support;

use std::sync::Arc;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, Register};
use kflex_jit::JitProgram;
use kflex_runtime::maps::{MapCallPlan, MapTable};
use map_support::*;

/// The machine instructions of slot `pc`.
fn slot_code(jit: &JitProgram, pc: usize) -> Vec<Instruction> {
    let start = jit.code_offset(pc).expect("slot compiled");
    let end = jit.code_offset(pc + 1).expect("next slot compiled");
    Decoder::with_ip(64, &jit.code()[start..end], 0, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

fn mnemonics(code: &[Instruction]) -> Vec<Mnemonic> {
    code.iter().map(Instruction::mnemonic).collect()
}

/// The code of the fast path: from the handle check to the `jmp` over the helper path.
fn fast_path(code: &[Instruction]) -> &[Instruction] {
    let end = code
        .iter()
        .position(|i| i.mnemonic() == Mnemonic::Jmp)
        .expect("a jump over the helper path");
    &code[..end]
}

/// `mov r11, handle; cmp rdi, r11; jne <helper path>` opens every compiled site.
fn assert_handle_check(code: &[Instruction], handle: u64) {
    assert_eq!(
        mnemonics(&code[..3]),
        [Mnemonic::Mov, Mnemonic::Cmp, Mnemonic::Jne]
    );
    assert_eq!(code[0].op0_register(), Register::R11);
    assert_eq!(code[0].immediate64(), handle);
    assert_eq!(
        (code[1].op0_register(), code[1].op1_register()),
        (Register::RDI, Register::R11)
    );
}

/// The helper path after the fast path: an ordinary trampoline call.
fn assert_helper_path_follows(code: &[Instruction]) {
    let jmp = code
        .iter()
        .position(|i| i.mnemonic() == Mnemonic::Jmp)
        .unwrap();
    let calls = code[jmp..]
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Call)
        .count();
    assert_eq!(calls, 1, "one trampoline call on the helper path");
}

fn array_plan(table: &MapTable, map: usize) -> (u64, u64, u32) {
    match table.call_plan(map) {
        Some(MapCallPlan::Array(a)) => (a.values, a.stride, a.max_entries),
        other => panic!("array plan: {other:?}"),
    }
}

#[test]
fn array_lookup_is_inline_and_branch_free() {
    let table = table();
    for (map, scale) in [(ARRAY, Mnemonic::Shl), (ARRAY24, Mnemonic::Imul)] {
        let jit = compile_for(&insns(LOOKUP, false), &table, map);
        let code = slot_code(&jit, CALL_SLOT);
        assert_handle_check(&code, table.handle(map));
        let fast = &fast_path(&code)[3..];
        assert_eq!(
            mnemonics(fast),
            [
                Mnemonic::Mov,    // eax = key
                Mnemonic::Mov,    // r10d = key
                scale,            // rax *= stride
                Mnemonic::Mov,    // r11 = values
                Mnemonic::Add,    // rax += r11
                Mnemonic::Xor,    // r11 = 0
                Mnemonic::Cmp,    // key < max_entries?
                Mnemonic::Cmovae, // else NULL
            ],
            "map {map}"
        );
        let (values, stride, max_entries) = array_plan(&table, map);
        assert_eq!(fast[0].op0_register(), Register::EAX);
        assert_eq!(fast[0].memory_base(), Register::RSI, "key at r2");
        match scale {
            Mnemonic::Shl => assert_eq!(1u64 << fast[2].immediate8(), stride),
            _ => assert_eq!(fast[2].immediate32() as u64, stride),
        }
        assert_eq!(fast[3].immediate64(), values);
        assert_eq!(fast[6].op0_register(), Register::R10D);
        assert_eq!(fast[6].immediate32(), max_entries);
        assert_helper_path_follows(&code);
    }
}

#[test]
fn percpu_lookup_reads_the_runs_cpu_and_bounds_it() {
    let table = table();
    let jit = compile_for(&insns(LOOKUP, false), &table, PERCPU);
    let code = slot_code(&jit, CALL_SLOT);
    assert_handle_check(&code, table.handle(PERCPU));
    let fast = &fast_path(&code)[3..];
    assert_eq!(
        mnemonics(fast),
        [
            Mnemonic::Mov,    // eax = key
            Mnemonic::Mov,    // r10d = key
            Mnemonic::Imul,   // rax *= cpus (3)
            Mnemonic::Mov,    // r11d = cpu
            Mnemonic::Add,    // rax += cpu
            Mnemonic::Shl,    // rax *= stride (8)
            Mnemonic::Mov,    // r11 = values
            Mnemonic::Add,    // rax += r11
            Mnemonic::Xor,    // r11 = 0
            Mnemonic::Cmp,    // key < max_entries?
            Mnemonic::Cmovae, // else NULL
            Mnemonic::Cmp,    // cpu < cpus?
            Mnemonic::Cmovae, // else NULL
        ]
    );
    let Some(MapCallPlan::PercpuArray(p)) = table.call_plan(PERCPU) else {
        panic!("per-CPU plan");
    };
    assert_eq!(fast[2].immediate32(), p.cpus);
    // The CPU is read from the state block (r9) in both places.
    assert_eq!(fast[3].memory_base(), Register::R9);
    assert_eq!(fast[11].memory_base(), Register::R9);
    assert_eq!(
        fast[3].memory_displacement64(),
        fast[11].memory_displacement64()
    );
    assert_eq!(fast[11].immediate32(), p.cpus);
    assert_eq!(fast[6].immediate64(), p.values);
    assert_eq!(fast[9].immediate32(), p.max_entries);
    assert_helper_path_follows(&code);
}

#[test]
fn hash_calls_are_direct_calls_of_the_map() {
    let table = table();
    for map in [HASH, LRU] {
        let Some(MapCallPlan::Hash(plan)) = table.call_plan(map) else {
            panic!("hash plan");
        };
        let funcs = [
            (LOOKUP, plan.lookup as usize as u64),
            (UPDATE, plan.update.unwrap() as usize as u64),
            (DELETE, plan.delete.unwrap() as usize as u64),
        ];
        for (helper, func) in funcs {
            let jit = compile_for(&insns(helper, false), &table, map);
            assert_eq!(jit.map_calls_compiled(), 1);
            let code = slot_code(&jit, CALL_SLOT);
            assert_handle_check(&code, table.handle(map));
            let fast = &fast_path(&code)[3..];
            let mut want = vec![Mnemonic::Mov, Mnemonic::Mov];
            if helper == UPDATE {
                want.push(Mnemonic::Mov);
            }
            want.extend([Mnemonic::Mov, Mnemonic::Call, Mnemonic::Mov]);
            assert_eq!(mnemonics(fast), want, "map {map} helper {helper}");
            // The slot is stored as the fault pc, rdi = the map.
            assert_eq!(fast[0].memory_base(), Register::R9);
            assert_eq!(fast[0].immediate32() as usize, CALL_SLOT);
            assert_eq!(fast[1].op0_register(), Register::RDI);
            assert_eq!(fast[1].immediate64(), plan.map as u64);
            let n = fast.len();
            if helper == UPDATE {
                // r8 = the run's CPU, from the state block.
                assert_eq!(fast[2].op0_register(), Register::R8);
                assert_eq!(fast[2].memory_base(), Register::R9);
            }
            assert_eq!(fast[n - 3].immediate64(), func);
            assert_eq!(fast[n - 2].op0_register(), Register::RAX);
            // r9 (the state block, caller-saved) is reloaded from the frame.
            assert_eq!(fast[n - 1].op0_register(), Register::R9);
            assert_eq!(fast[n - 1].memory_base(), Register::RSP);
            // No fault check after the direct call.
            assert!(!fast.iter().any(|i| i.mnemonic() == Mnemonic::Cmp));
            assert_helper_path_follows(&code);
        }
    }
}

#[test]
fn calls_without_a_plan_stay_ordinary_helper_calls() {
    let table = table();
    let plain = compile_plain(&insns(UPDATE, false));
    let plain_code = mnemonics(&slot_code(&plain, CALL_SLOT));
    for (helper, map) in [(UPDATE, ARRAY), (DELETE, ARRAY), (UPDATE, PERCPU)] {
        let jit = compile_for(&insns(helper, false), &table, map);
        assert_eq!(jit.map_calls_compiled(), 0);
        let code = mnemonics(&slot_code(&jit, CALL_SLOT));
        assert_eq!(code, plain_code, "helper {helper} on map {map}");
    }
    // Update and delete of a map programs may only read keep the helper path (which refuses).
    let spec = kflex_object::MapSpec::new("ro", kflex_object::MapType::Hash, 4, 8, 2)
        .with_flags(kflex_runtime::maps::BPF_F_RDONLY_PROG);
    let opts = kflex_runtime::maps::MapOptions::default();
    let ro = Arc::new(MapTable::create(&[spec], &opts).unwrap());
    for (helper, compiled) in [(LOOKUP, 1), (UPDATE, 0), (DELETE, 0)] {
        let jit = compile_for(&insns(helper, false), &ro, 0);
        assert_eq!(jit.map_calls_compiled(), compiled, "helper {helper}");
    }
}
