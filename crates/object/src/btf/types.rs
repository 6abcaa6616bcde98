//! BTF type records (`struct btf_type` and the kind-specific data that follows it).

use super::reader::Reader;
use super::strings::StringTable;

/// A BTF type id; 0 is `void`.
pub type TypeId = u32;

/// A struct or union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member name (empty for anonymous members).
    pub name: String,
    /// Member type.
    pub ty: TypeId,
    /// Bit offset (and, with the kind flag, bitfield size in the top 8 bits).
    pub offset: u32,
}

/// One enumerator of an `ENUM` or `ENUM64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enumerator {
    /// Enumerator name.
    pub name: String,
    /// Value (sign-extended for 32-bit enums when the kind flag marks them signed).
    pub value: i64,
}

/// A function parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Parameter name (may be empty).
    pub name: String,
    /// Parameter type (0 with an empty name marks a variadic tail).
    pub ty: TypeId,
}

/// One variable in a `DATASEC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarSecInfo {
    /// The `VAR` type id.
    pub ty: TypeId,
    /// Byte offset in the section.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// The kind-specific content of a BTF type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfKind {
    /// Type id 0.
    Void,
    /// `BTF_KIND_INT`.
    Int {
        /// Size in bytes.
        size: u32,
        /// Encoding bits (signed 1, char 2, bool 4).
        encoding: u8,
        /// Bit offset.
        offset: u8,
        /// Number of bits.
        bits: u8,
    },
    /// `BTF_KIND_PTR`.
    Ptr(TypeId),
    /// `BTF_KIND_ARRAY`.
    Array {
        /// Element type.
        elem: TypeId,
        /// Index type.
        index: TypeId,
        /// Number of elements.
        nelems: u32,
    },
    /// `BTF_KIND_STRUCT`.
    Struct {
        /// Size in bytes.
        size: u32,
        /// Members in order.
        members: Vec<Member>,
    },
    /// `BTF_KIND_UNION`.
    Union {
        /// Size in bytes.
        size: u32,
        /// Members in order.
        members: Vec<Member>,
    },
    /// `BTF_KIND_ENUM` (32-bit values) or `BTF_KIND_ENUM64`.
    Enum {
        /// Size in bytes.
        size: u32,
        /// True for values interpreted as signed.
        signed: bool,
        /// Enumerators.
        values: Vec<Enumerator>,
        /// True for `ENUM64`.
        wide: bool,
    },
    /// `BTF_KIND_FWD`.
    Fwd {
        /// True for a forward-declared union.
        union: bool,
    },
    /// `BTF_KIND_TYPEDEF`.
    Typedef(TypeId),
    /// `BTF_KIND_VOLATILE`.
    Volatile(TypeId),
    /// `BTF_KIND_CONST`.
    Const(TypeId),
    /// `BTF_KIND_RESTRICT`.
    Restrict(TypeId),
    /// `BTF_KIND_FUNC`.
    Func {
        /// The `FUNC_PROTO` type.
        proto: TypeId,
        /// Linkage (0 static, 1 global, 2 extern).
        linkage: u32,
    },
    /// `BTF_KIND_FUNC_PROTO`.
    FuncProto {
        /// Return type.
        ret: TypeId,
        /// Parameters.
        params: Vec<Param>,
    },
    /// `BTF_KIND_VAR`.
    Var {
        /// Variable type.
        ty: TypeId,
        /// Linkage (0 static, 1 global, 2 extern).
        linkage: u32,
    },
    /// `BTF_KIND_DATASEC`.
    Datasec {
        /// Section size in bytes.
        size: u32,
        /// Variables.
        vars: Vec<VarSecInfo>,
    },
    /// `BTF_KIND_FLOAT`.
    Float {
        /// Size in bytes.
        size: u32,
    },
    /// `BTF_KIND_DECL_TAG`.
    DeclTag {
        /// Tagged type.
        target: TypeId,
        /// Member or parameter index, or -1 for the type itself.
        component: i32,
    },
    /// `BTF_KIND_TYPE_TAG`.
    TypeTag(TypeId),
}

/// One BTF type: its name and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfType {
    /// Name (empty for anonymous types); for tags, the tag string.
    pub name: String,
    /// Kind and content.
    pub kind: BtfKind,
}

impl BtfType {
    /// The type ids this type refers to.
    pub fn referenced(&self) -> Vec<TypeId> {
        match &self.kind {
            BtfKind::Void | BtfKind::Int { .. } | BtfKind::Fwd { .. } | BtfKind::Float { .. } => {
                vec![]
            }
            BtfKind::Enum { .. } => vec![],
            BtfKind::Ptr(t)
            | BtfKind::Typedef(t)
            | BtfKind::Volatile(t)
            | BtfKind::Const(t)
            | BtfKind::Restrict(t)
            | BtfKind::TypeTag(t) => vec![*t],
            BtfKind::Array { elem, index, .. } => vec![*elem, *index],
            BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => {
                members.iter().map(|m| m.ty).collect()
            }
            BtfKind::Func { proto, .. } => vec![*proto],
            BtfKind::FuncProto { ret, params } => std::iter::once(*ret)
                .chain(params.iter().map(|p| p.ty))
                .collect(),
            BtfKind::Var { ty, .. } => vec![*ty],
            BtfKind::Datasec { vars, .. } => vars.iter().map(|v| v.ty).collect(),
            BtfKind::DeclTag { target, .. } => vec![*target],
        }
    }
}

/// Parses the next type record from `r`.
pub(crate) fn parse_type(r: &mut Reader<'_>, strings: &StringTable) -> Result<BtfType, String> {
    let name_off = r.u32()?;
    let info = r.u32()?;
    let size_or_type = r.u32()?;
    let vlen = (info & 0xffff) as usize;
    let kind_id = (info >> 24) & 0x1f;
    let kflag = info >> 31 != 0;
    let name = strings.get(name_off)?.to_string();
    let name_of = |off: u32| strings.get(off).map(str::to_string);
    // Each member record is at least 8 bytes; refuse counts the remaining bytes cannot hold
    // before allocating.
    let check_vlen = |r: &Reader<'_>, rec: usize| -> Result<(), String> {
        if vlen.saturating_mul(rec) > r.remaining() {
            return Err(format!(
                "type with {vlen} members runs past the end of the type section"
            ));
        }
        Ok(())
    };
    let kind = match kind_id {
        1 => {
            let enc = r.u32()?;
            BtfKind::Int {
                size: size_or_type,
                encoding: ((enc >> 24) & 0x0f) as u8,
                offset: ((enc >> 16) & 0xff) as u8,
                bits: (enc & 0xff) as u8,
            }
        }
        2 => BtfKind::Ptr(size_or_type),
        3 => BtfKind::Array {
            elem: r.u32()?,
            index: r.u32()?,
            nelems: r.u32()?,
        },
        4 | 5 => {
            check_vlen(r, 12)?;
            let mut members = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                members.push(Member {
                    name: name_of(r.u32()?)?,
                    ty: r.u32()?,
                    offset: r.u32()?,
                });
            }
            if kind_id == 4 {
                BtfKind::Struct {
                    size: size_or_type,
                    members,
                }
            } else {
                BtfKind::Union {
                    size: size_or_type,
                    members,
                }
            }
        }
        6 => {
            check_vlen(r, 8)?;
            let mut values = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                let name = name_of(r.u32()?)?;
                let raw = r.u32()?;
                let value = if kflag {
                    i64::from(raw as i32)
                } else {
                    i64::from(raw)
                };
                values.push(Enumerator { name, value });
            }
            BtfKind::Enum {
                size: size_or_type,
                signed: kflag,
                values,
                wide: false,
            }
        }
        7 => BtfKind::Fwd { union: kflag },
        8 => BtfKind::Typedef(size_or_type),
        9 => BtfKind::Volatile(size_or_type),
        10 => BtfKind::Const(size_or_type),
        11 => BtfKind::Restrict(size_or_type),
        12 => BtfKind::Func {
            proto: size_or_type,
            linkage: vlen as u32,
        },
        13 => {
            check_vlen(r, 8)?;
            let mut params = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                params.push(Param {
                    name: name_of(r.u32()?)?,
                    ty: r.u32()?,
                });
            }
            BtfKind::FuncProto {
                ret: size_or_type,
                params,
            }
        }
        14 => BtfKind::Var {
            ty: size_or_type,
            linkage: r.u32()?,
        },
        15 => {
            check_vlen(r, 12)?;
            let mut vars = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                vars.push(VarSecInfo {
                    ty: r.u32()?,
                    offset: r.u32()?,
                    size: r.u32()?,
                });
            }
            BtfKind::Datasec {
                size: size_or_type,
                vars,
            }
        }
        16 => BtfKind::Float { size: size_or_type },
        17 => BtfKind::DeclTag {
            target: size_or_type,
            component: r.i32()?,
        },
        18 => BtfKind::TypeTag(size_or_type),
        19 => {
            check_vlen(r, 12)?;
            let mut values = Vec::with_capacity(vlen);
            for _ in 0..vlen {
                let name = name_of(r.u32()?)?;
                let lo = u64::from(r.u32()?);
                let hi = u64::from(r.u32()?);
                values.push(Enumerator {
                    name,
                    value: ((hi << 32) | lo) as i64,
                });
            }
            BtfKind::Enum {
                size: size_or_type,
                signed: kflag,
                values,
                wide: true,
            }
        }
        other => return Err(format!("unknown BTF kind {other}")),
    };
    Ok(BtfType { name, kind })
}
