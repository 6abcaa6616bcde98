//! Programs, subprogram linking, callbacks, line info and license, from real clang output.

mod common;

use common::*;
use kflex_isa::op;
use kflex_object::ProgType;

#[test]
fn finds_every_program_with_type_and_sleepability() {
    let Some(obj) = load("programs") else { return };
    let got: Vec<(&str, &str, Option<ProgType>, bool)> = obj
        .programs
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.section.as_str(),
                p.prog_type,
                p.sleepable,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("prog_a", "xdp", Some(ProgType::Xdp), false),
            ("prog_b", "xdp", Some(ProgType::Xdp), false),
            ("prog_tc", "tc", Some(ProgType::SchedCls), false),
            ("prog_sock", "socket", Some(ProgType::SocketFilter), false),
            ("prog_sys", "syscall", Some(ProgType::Syscall), true),
            (
                "prog_verdict",
                "sk_skb/stream_verdict",
                Some(ProgType::SkSkb),
                false
            ),
            ("prog_sleepy", "fentry.s/do_nothing", None, true),
        ]
    );
    // Subprograms in .text are never programs of their own.
    assert!(obj.program("shared_global").is_none());
    assert!(obj.program("leaf").is_none());
    assert_eq!(obj.license.as_deref(), Some("Dual MIT/GPL"));
    assert!(obj.maps.is_empty());
    assert!(obj.btf.as_ref().is_some_and(|b| b.len() > 10));
}

/// Every BPF-to-BPF call lands on the first instruction of a function of the program, and each
/// function appears once.
fn check_calls(p: &kflex_object::Program) {
    for (pc, i) in local_calls(p) {
        assert_eq!(i.src, op::PSEUDO_CALL);
        let t = target(p, pc);
        assert!(
            func_starting_at(p, t).is_some(),
            "{}: call at {pc} lands on {t}, not a function start",
            p.name
        );
    }
    let mut names: Vec<&str> = p.func_info.iter().map(|f| f.name.as_str()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        n,
        "{}: duplicated function in {:?}",
        p.name,
        p.func_info
    );
    assert_eq!(p.func_info[0].insn, 0);
    assert_eq!(p.func_info[0].name, p.name);
}

fn callees(p: &kflex_object::Program) -> Vec<(String, String)> {
    local_calls(p)
        .into_iter()
        .map(|(pc, _)| {
            let from = p.func_at(pc).unwrap().name.clone();
            let to = func_starting_at(p, target(p, pc)).unwrap().to_string();
            (from, to)
        })
        .collect()
}

#[test]
fn links_nested_static_and_global_subprograms() {
    let Some(obj) = load("programs") else { return };
    for p in &obj.programs {
        check_calls(p);
    }
    let a = obj.program("prog_a").unwrap();
    let names: Vec<&str> = a.func_info.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["prog_a", "shared_global", "mid", "leaf"]);
    assert_eq!(
        callees(a),
        [
            ("prog_a".to_string(), "shared_global".to_string()),
            ("shared_global".into(), "mid".into()),
            ("mid".into(), "leaf".into()),
            ("mid".into(), "leaf".into()),
        ]
    );
    // prog_a: r1 = ctx->ingress_ifindex; call shared_global; exit.
    assert_eq!(a.insns[1].opcode, op::JMP | op::CALL);
    assert_eq!(a.insns[1].imm, 1);
    assert_eq!(a.func_info[1].insn, 3);
    // The functions' bodies are copied unchanged apart from call immediates: leaf is
    // `w0 = w1; w0 *= 3; w0 += 1; exit`.
    let leaf = a.func_info[3].insn;
    assert_eq!(a.insns.len(), leaf + 4);
    assert_eq!(
        (a.insns[leaf + 1].opcode, a.insns[leaf + 1].imm),
        (op::ALU | op::MUL | op::K, 3)
    );

    // shared_global is linked into both xdp programs; only_b only into prog_b.
    let b = obj.program("prog_b").unwrap();
    let mut names: Vec<&str> = b.func_info.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["leaf", "mid", "only_b", "prog_b", "shared_global"]);
    assert!(callees(b).contains(&("prog_b".into(), "only_b".into())));

    let sock = obj.program("prog_sock").unwrap();
    assert_eq!(
        callees(sock),
        [("prog_sock".to_string(), "leaf".to_string())]
    );
    let v = obj.program("prog_verdict").unwrap();
    assert_eq!(v.func_info.len(), 1);
    assert_eq!(v.insns.len(), 2);
}

#[test]
fn mutual_recursion_is_laid_out_once() {
    let Some(obj) = load("programs") else { return };
    let p = obj.program("prog_sys").unwrap();
    let names: Vec<&str> = p.func_info.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["prog_sys", "ping", "pong"]);
    assert_eq!(
        callees(p),
        [
            ("prog_sys".to_string(), "ping".to_string()),
            ("ping".into(), "pong".into()),
            ("pong".into(), "ping".into()),
        ]
    );
    // pong calls back to ping, which lies before it: a negative offset.
    let back = local_calls(p).last().unwrap().1;
    assert!(back.imm < 0);
}

#[test]
fn callback_becomes_pseudo_func() {
    let Some(obj) = load("programs") else { return };
    let p = obj.program("prog_tc").unwrap();
    let funcs = lddws(p, op::PSEUDO_FUNC);
    assert_eq!(funcs.len(), 1);
    let pc = funcs[0];
    assert_eq!(p.insns[pc].dst, 2, "callback is bpf_loop's second argument");
    assert_eq!(p.insns[pc + 1].imm, 0);
    let t = target(p, pc);
    assert_eq!(func_starting_at(p, t), Some("loop_cb"));
    // The helper call itself is untouched.
    assert!(
        p.insns
            .iter()
            .any(|i| i.opcode == op::JMP | op::CALL && i.src == 0 && i.imm == 181)
    );
}

#[test]
fn line_info_maps_to_linked_indices() {
    let Some(obj) = load("programs") else { return };
    let src = source("programs");
    let a = obj.program("prog_a").unwrap();
    let l = a.line_at(1).unwrap();
    assert!(l.file.ends_with("programs.c"), "{}", l.file);
    assert_eq!(
        l.line,
        line_of(&src, "return shared_global(ctx->ingress_ifindex)")
    );
    assert!(l.source.contains("shared_global(ctx->ingress_ifindex)"));
    assert!(l.column > 0);
    // Lines inside appended subprograms point at their own source.
    let sg = a.func_info[1].insn;
    assert_eq!(
        a.line_at(sg).unwrap().line,
        line_of(&src, "return mid(x) ^ 5;")
    );
    let leaf = a.func_info[3].insn;
    let leaf_line = a.line_at(leaf + 1).unwrap().line;
    assert_eq!(leaf_line, line_of(&src, "return x * 3 + 1;"));
    // The same subprogram at another position in another program has the same lines.
    let sock = obj.program("prog_sock").unwrap();
    assert_eq!(
        sock.line_at(sock.func_info[1].insn + 1).unwrap().line,
        leaf_line
    );
    // Records are sorted and in range.
    for p in &obj.programs {
        assert!(p.line_info.windows(2).all(|w| w[0].insn <= w[1].insn));
        assert!(p.line_info.iter().all(|l| l.insn < p.insns.len()));
        assert!(!p.line_info.is_empty());
    }
    assert_eq!(a.func_at(sg).unwrap().name, "shared_global");
    assert_eq!(a.func_at(a.insns.len()), None);
}
