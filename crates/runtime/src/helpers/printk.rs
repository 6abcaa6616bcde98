//! The format engine of `bpf_trace_printk`, following the rules of Linux's `bpf_bprintf_prepare`.
//!
//! Accepted: at most 3 conversions; flags `0 + - space`, a width; `%d %i %u %x %X` with optional
//! `l`/`ll`; `%c`; `%s`; `%p`, `%pK`, `%px`, `%ps`, `%pS`, `%pB`, `%pks`, `%pus`, `%pi4`, `%pI4`,
//! `%pi6`, `%pI6`; `%%`. Anything else, or a non-printable character in the format, is `EINVAL`.
//! Strings and IP addresses are read through the checked memory map; a string that cannot be read
//! prints as empty and an address as zeros, as in Linux.

use crate::memory::MemoryMap;

/// Maximum number of conversions (Linux `MAX_TRACE_PRINTK_VARARGS`).
pub const MAX_ARGS: usize = 3;
/// Size of the output buffer, including the terminating NUL (Linux `MAX_BPRINTF_BUF`).
pub const MAX_OUTPUT: usize = 512;

/// Why a format was refused (the helper returns `-EINVAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Byte offset in the format.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// A parsed conversion's padding.
#[derive(Clone, Copy, Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    width: usize,
}

impl Spec {
    fn pad(&self, out: &mut Vec<u8>, body: &[u8], numeric: bool) {
        let fill = self.width.saturating_sub(body.len());
        if self.left {
            out.extend_from_slice(body);
            out.extend(std::iter::repeat_n(b' ', fill));
        } else if self.zero && numeric {
            // Zeros go after a sign.
            let (sign, digits) = match body.first() {
                Some(b'-' | b'+' | b' ') => body.split_at(1),
                _ => body.split_at(0),
            };
            out.extend_from_slice(sign);
            out.extend(std::iter::repeat_n(b'0', fill));
            out.extend_from_slice(digits);
        } else {
            out.extend(std::iter::repeat_n(b' ', fill));
            out.extend_from_slice(body);
        }
    }
}

/// Formats `fmt` (the bytes up to, not including, its NUL) with the given arguments.
///
/// Returns the formatted bytes (not truncated; the caller truncates to [`MAX_OUTPUT`] - 1).
pub fn format(fmt: &[u8], args: &[u64; MAX_ARGS], mem: &MemoryMap) -> Result<Vec<u8>, FormatError> {
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    let err = |offset: usize, reason: &'static str| Err(FormatError { offset, reason });
    let mut out = Vec::new();
    let mut next_arg = 0usize;
    let mut i = 0usize;
    while i < fmt.len() {
        let c = fmt[i];
        if !c.is_ascii() || !(c.is_ascii_graphic() || c == b' ' || c.is_ascii_whitespace()) {
            return err(i, "non-printable character in format");
        }
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        if at(i + 1) == b'%' {
            out.push(b'%');
            i += 2;
            continue;
        }
        let start = i;
        if next_arg >= MAX_ARGS {
            return err(start, "more than 3 conversions");
        }
        let arg = args[next_arg];
        next_arg += 1;
        i += 1;
        let mut spec = Spec::default();
        loop {
            match at(i) {
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b'-' => spec.left = true,
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        while at(i).is_ascii_digit() {
            spec.width = spec
                .width
                .saturating_mul(10)
                .saturating_add((at(i) - b'0') as usize);
            i += 1;
        }
        spec.width = spec.width.min(MAX_OUTPUT);
        let ends_word = |b: u8| b == 0 || b.is_ascii_whitespace() || b.is_ascii_punctuation();
        match at(i) {
            b'p' => {
                let n1 = at(i + 1);
                let n2 = at(i + 2);
                if ends_word(n1) {
                    spec.pad(&mut out, format!("0x{arg:x}").as_bytes(), false);
                    i += 1;
                } else if (n1 == b'k' || n1 == b'u') && n2 == b's' {
                    if !ends_word(at(i + 3)) {
                        return err(start, "%s must not be followed by a letter or digit");
                    }
                    spec.pad(&mut out, &read_str(mem, arg, MAX_OUTPUT - 1), false);
                    i += 3;
                } else if matches!(n1, b'K' | b'x' | b's' | b'S' | b'B') {
                    spec.pad(&mut out, format!("0x{arg:x}").as_bytes(), false);
                    i += 2;
                } else if matches!(n1, b'i' | b'I') && matches!(n2, b'4' | b'6') {
                    let len = if n2 == b'4' { 4 } else { 16 };
                    let ip = mem
                        .read_bytes(arg, len)
                        .unwrap_or_else(|_| vec![0; len as usize]);
                    spec.pad(&mut out, format_ip(&ip, n1 == b'I').as_bytes(), false);
                    i += 3;
                } else {
                    return err(start, "unsupported %p conversion");
                }
            }
            b's' => {
                if !ends_word(at(i + 1)) {
                    return err(start, "%s must not be followed by a letter or digit");
                }
                spec.pad(&mut out, &read_str(mem, arg, MAX_OUTPUT - 1), false);
                i += 1;
            }
            b'c' => {
                spec.pad(&mut out, &[arg as u8], false);
                i += 1;
            }
            _ => {
                let mut long = false;
                if at(i) == b'l' {
                    long = true;
                    i += 1;
                }
                if at(i) == b'l' {
                    i += 1;
                }
                let conv = at(i);
                let body = match conv {
                    b'd' | b'i' => {
                        let v = if long {
                            arg as i64
                        } else {
                            arg as u32 as i32 as i64
                        };
                        let sign = if v < 0 {
                            ""
                        } else if spec.plus {
                            "+"
                        } else if spec.space {
                            " "
                        } else {
                            ""
                        };
                        format!("{sign}{v}")
                    }
                    b'u' => format!("{}", narrow(arg, long)),
                    b'x' => format!("{:x}", narrow(arg, long)),
                    b'X' => format!("{:X}", narrow(arg, long)),
                    _ => return err(start, "unsupported conversion"),
                };
                spec.pad(&mut out, body.as_bytes(), true);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn narrow(v: u64, long: bool) -> u64 {
    if long { v } else { v as u32 as u64 }
}

/// Reads a NUL-terminated string of at most `max` bytes; empty if any byte before the NUL (or the
/// limit) cannot be read.
fn read_str(mem: &MemoryMap, addr: u64, max: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for k in 0..max as u64 {
        let Some(a) = addr.checked_add(k) else {
            return Vec::new();
        };
        match mem.load(a, 1) {
            Ok(0) => break,
            Ok(b) => s.push(b as u8),
            Err(_) => return Vec::new(),
        }
    }
    s
}

/// `%pI4` (`1.2.3.4`), `%pi4` (`001.002.003.004`), `%pI6` (`0001:0db8:...`), `%pi6` (32 digits).
fn format_ip(b: &[u8], dotted: bool) -> String {
    if b.len() == 4 {
        let parts: Vec<String> = b
            .iter()
            .map(|x| {
                if dotted {
                    format!("{x}")
                } else {
                    format!("{x:03}")
                }
            })
            .collect();
        parts.join(".")
    } else {
        let groups: Vec<String> = b
            .chunks(2)
            .map(|c| format!("{:02x}{:02x}", c[0], c.get(1).copied().unwrap_or(0)))
            .collect();
        groups.join(if dotted { ":" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Region, RegionKind};

    fn f(fmt: &str, args: [u64; 3]) -> Result<String, FormatError> {
        format(fmt.as_bytes(), &args, &MemoryMap::new()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn integers() {
        assert_eq!(
            f("%d %i %u", [-5i64 as u64, 7, u64::MAX]).unwrap(),
            "-5 7 4294967295"
        );
        assert_eq!(
            f("%ld %lu %llx", [-5i64 as u64, u64::MAX, 0xabc]).unwrap(),
            "-5 18446744073709551615 abc"
        );
        assert_eq!(
            f("%x %X %lX", [0x1_0000_00ff, 0xab, 0xd_eadb_eef0]).unwrap(),
            "ff AB DEADBEEF0"
        );
        assert_eq!(
            f("[%5d|%-4u|%05d]", [42, 7, -42i64 as u64]).unwrap(),
            "[   42|7   |-0042]"
        );
        assert_eq!(f("%+d % d %c%%", [3, 4, b'z' as u64]).unwrap(), "+3  4 z%");
        assert_eq!(
            f("%p %px %pK", [0x10, 0x20, 0x30]).unwrap(),
            "0x10 0x20 0x30"
        );
    }

    #[test]
    fn refusals() {
        assert!(f("%d %d %d %d", [0; 3]).is_err());
        assert!(f("%q", [0; 3]).is_err());
        assert!(
            f("%lld%", [0; 3]).is_err(),
            "a trailing % is a conversion with nothing after it"
        );
        assert!(f("%hd", [0; 3]).is_err());
        assert!(f("%#x", [0; 3]).is_err());
        assert!(f("%sx", [0; 3]).is_err());
        assert!(f("%pZ", [0; 3]).is_err());
        assert!(f("bell\x07", [0; 3]).is_err());
        assert_eq!(f("100%% sure\n", [0; 3]).unwrap(), "100% sure\n");
    }

    #[test]
    fn strings_and_ips_read_checked_memory() {
        let mut buf = *b"hi there\0\x0a\x00\x00\x01";
        let mut mem = MemoryMap::new();
        let base = buf.as_mut_ptr() as u64;
        // SAFETY: `buf` outlives `mem` and is only accessed through it below.
        unsafe {
            mem.insert(Region {
                start: base,
                len: buf.len() as u64,
                kind: RegionKind::Stack(0),
                writable: true,
                elements: None,
            })
        }
        .unwrap();
        let out = format(b"<%s> <%pI4> <%pi4>", &[base, base + 9, base + 9], &mem).unwrap();
        assert_eq!(out, b"<hi there> <10.0.0.1> <010.000.000.001>");
        assert!(format(b"<%s> <%s> <%s> <%s>", &[base; 3], &mem).is_err());
        // An address outside every region prints as zeros.
        let out = format(b"%pI6", &[8, 0, 0], &mem).unwrap();
        assert_eq!(out, b"0000:0000:0000:0000:0000:0000:0000:0000");
        // Unterminated string running off the region: empty.
        let out = format(b"[%s]", &[base + 12, 0, 0], &mem).unwrap();
        assert_eq!(out, b"[]");
        let out = format(b"[%10s]", &[base + 3, 0, 0], &mem).unwrap();
        assert_eq!(out, b"[     there]");
    }
}
