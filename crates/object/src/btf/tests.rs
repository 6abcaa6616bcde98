//! Unit tests of the BTF and BTF.ext readers on hand-built sections.

use super::*;

/// Builds a `.BTF` section from raw type words and a string table.
pub(crate) struct Builder {
    types: Vec<u32>,
    strings: Vec<u8>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            types: Vec::new(),
            strings: vec![0],
        }
    }

    /// Adds a string, returning its offset.
    pub(crate) fn s(&mut self, s: &str) -> u32 {
        let off = self.strings.len() as u32;
        self.strings.extend(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// Adds a type record: name offset, kind, vlen, size/type, then extra words.
    pub(crate) fn ty(
        &mut self,
        name: u32,
        kind: u32,
        vlen: u32,
        size_or_type: u32,
        extra: &[u32],
    ) -> &mut Self {
        self.types.extend([name, (kind << 24) | vlen, size_or_type]);
        self.types.extend(extra);
        self
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let type_len = (self.types.len() * 4) as u32;
        let mut v = Vec::new();
        v.extend(BTF_MAGIC.to_le_bytes());
        v.extend([1, 0]);
        for x in [24, 0, type_len, type_len, self.strings.len() as u32] {
            v.extend(x.to_le_bytes());
        }
        for t in &self.types {
            v.extend(t.to_le_bytes());
        }
        v.extend(&self.strings);
        v
    }
}

fn sample() -> (Builder, Btf) {
    let mut b = Builder::new();
    let int = b.s("int");
    let pair = b.s("pair");
    let (a, bb) = (b.s("a"), b.s("b"));
    let td = b.s("pair_t");
    let fname = b.s("b");
    b.ty(int, 1, 0, 4, &[(1 << 24) | 32]) // 1: int
        .ty(0, 2, 0, 1, &[]) // 2: int *
        .ty(0, 3, 0, 0, &[1, 1, 10]) // 3: int[10]
        .ty(pair, 4, 2, 16, &[a, 1, 0, bb, 2, 64]) // 4: struct pair { int a; int *b; }
        .ty(td, 8, 0, 4, &[]) // 5: typedef struct pair pair_t
        .ty(0, 10, 0, 5, &[]) // 6: const pair_t
        .ty(0, 3, 0, 0, &[6, 1, 3]) // 7: const pair_t[3]
        .ty(0, 13, 1, 1, &[a, 1]) // 8: int (int a)
        .ty(fname, 12, 1, 8, &[]); // 9: func "b"
    let btf = Btf::parse(&b.build()).unwrap();
    (b, btf)
}

#[test]
fn parses_and_sizes_types() {
    let (_, btf) = sample();
    assert_eq!(btf.len(), 10);
    assert_eq!(btf.ty(1).unwrap().name, "int");
    assert_eq!(
        btf.ty(1).unwrap().kind,
        BtfKind::Int {
            size: 4,
            encoding: 1,
            offset: 0,
            bits: 32
        }
    );
    assert_eq!(btf.size_of(1), Ok(4));
    assert_eq!(btf.size_of(2), Ok(8));
    assert_eq!(btf.size_of(3), Ok(40));
    assert_eq!(btf.size_of(4), Ok(16));
    assert_eq!(btf.size_of(7), Ok(48));
    assert_eq!(btf.resolve(6), Ok(4));
    match &btf.ty(4).unwrap().kind {
        BtfKind::Struct { members, .. } => {
            assert_eq!(
                members[1],
                Member {
                    name: "b".into(),
                    ty: 2,
                    offset: 64
                }
            );
        }
        k => panic!("{k:?}"),
    }
    assert!(btf.size_of(8).unwrap_err().contains("function prototype"));
    assert!(btf.size_of(9).unwrap_err().contains("function b"));
    assert!(btf.size_of(0).unwrap_err().contains("void"));
    assert!(btf.size_of(99).unwrap_err().contains("out of range"));
    assert_eq!(
        btf.find("pair_t", |k| matches!(k, BtfKind::Typedef(_)))
            .map(|(i, _)| i),
        Some(5)
    );
}

#[test]
fn cycles_are_errors() {
    let mut b = Builder::new();
    b.ty(0, 8, 0, 2, &[])
        .ty(0, 10, 0, 1, &[])
        .ty(0, 3, 0, 0, &[3, 3, 2]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert!(btf.size_of(1).unwrap_err().contains("too deep or cyclic"));
    assert!(btf.resolve(2).unwrap_err().contains("too deep or cyclic"));
    assert!(btf.size_of(3).unwrap_err().contains("too deep or cyclic"));
}

#[test]
fn rejects_malformed_types() {
    let mut b = Builder::new();
    b.ty(0, 2, 0, 7, &[]);
    let e = Btf::parse(&b.build()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "section .BTF: type 1 () refers to type 7, but only 2 types exist"
    );

    let mut b = Builder::new();
    b.ty(0, 25, 0, 0, &[]);
    let e = Btf::parse(&b.build()).unwrap_err().to_string();
    assert_eq!(e, "section .BTF: type 1 at offset 0: unknown BTF kind 25");

    let mut b = Builder::new();
    b.ty(0, 4, 0xffff, 8, &[]);
    assert!(
        Btf::parse(&b.build())
            .unwrap_err()
            .to_string()
            .contains("65535 members runs past the end")
    );

    let mut b = Builder::new();
    b.ty(500, 2, 0, 0, &[]);
    assert!(
        Btf::parse(&b.build())
            .unwrap_err()
            .to_string()
            .contains("string offset 500 out of range")
    );

    // Truncated inside a record.
    let mut b = Builder::new();
    b.ty(0, 1, 0, 4, &[]);
    assert!(
        Btf::parse(&b.build())
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
}

#[test]
fn rejects_sections_outside_the_data() {
    let (b, _) = sample();
    let mut bytes = b.build();
    bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes()); // str_off
    assert!(
        Btf::parse(&bytes)
            .unwrap_err()
            .to_string()
            .contains("string section at offset")
    );
}

#[test]
fn datasec_and_var() {
    let mut b = Builder::new();
    let (int, x, sec) = (b.s("int"), b.s("x"), b.s(".maps"));
    b.ty(int, 1, 0, 4, &[32])
        .ty(x, 14, 0, 1, &[1])
        .ty(sec, 15, 1, 4, &[2, 0, 4]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert_eq!(
        btf.datasec(".maps"),
        Some(
            &[VarSecInfo {
                ty: 2,
                offset: 0,
                size: 4
            }][..]
        )
    );
    assert_eq!(btf.size_of(2), Ok(4));
    assert_eq!(btf.datasec(".data"), None);
}

/// Builds a `.BTF.ext` section with the given blocks (each `rec_size` then section blocks).
fn ext(func: &[u32], line: &[u32], core: &[u32]) -> Vec<u8> {
    let words = |w: &[u32]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (f, l, c) = (words(func), words(line), words(core));
    let mut v = Vec::new();
    v.extend(BTF_MAGIC.to_le_bytes());
    v.extend([1, 0]);
    let (fl, ll, cl) = (f.len() as u32, l.len() as u32, c.len() as u32);
    for x in [32, 0, fl, fl, ll, fl + ll, cl] {
        v.extend(x.to_le_bytes());
    }
    v.extend(f);
    v.extend(l);
    v.extend(c);
    v
}

#[test]
fn parses_btf_ext() {
    let mut b = Builder::new();
    let (sec, file, src) = (b.s("xdp"), b.s("a.c"), b.s("return 0;"));
    let strings = StringTable::new(&b.strings).unwrap();
    let bytes = ext(
        &[8, sec, 1, 0, 7],
        &[
            16,
            sec,
            2,
            0,
            file,
            src,
            (3 << 10) | 5,
            16,
            file,
            src,
            (4 << 10) | 2,
        ],
        &[16, sec, 1, 0, 1, 0, 0],
    );
    let e = BtfExt::parse(&bytes, &strings).unwrap();
    assert_eq!(
        e.func_info[0].records,
        [ExtFuncInfo {
            insn_off: 0,
            type_id: 7
        }]
    );
    let lines = e.lines_for("xdp");
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1],
        ExtLineInfo {
            insn_off: 16,
            file: "a.c".into(),
            source: "return 0;".into(),
            line: 4,
            column: 2
        }
    );
    assert_eq!(e.core_relos[0].section, "xdp");
    assert_eq!(e.core_relos[0].records.len(), 1);
    assert!(e.lines_for("tc").is_empty());
}

#[test]
fn rejects_malformed_btf_ext() {
    let mut b = Builder::new();
    let sec = b.s("xdp");
    let strings = StringTable::new(&b.strings).unwrap();
    let e = BtfExt::parse(&ext(&[4, sec, 0], &[], &[]), &strings)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "section .BTF.ext: func_info: record size 4 not in 8..=256"
    );
    let e = BtfExt::parse(&ext(&[8, sec, 1000, 0, 0], &[], &[]), &strings)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1000 records of 8 bytes run past the end"),
        "{e}"
    );
    let e = BtfExt::parse(&ext(&[8, 99, 0], &[], &[]), &strings)
        .unwrap_err()
        .to_string();
    assert!(e.contains("string offset 99 out of range"), "{e}");
    let e = BtfExt::parse(&[0x9f, 0xeb, 1, 0, 99, 0, 0, 0], &strings)
        .unwrap_err()
        .to_string();
    assert!(e.contains("header length 99"), "{e}");
    assert!(
        BtfExt::parse(&[1, 2], &strings)
            .unwrap_err()
            .to_string()
            .contains("magic")
    );
}
