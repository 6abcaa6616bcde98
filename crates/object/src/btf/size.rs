//! Type resolution and sizes, guarded against reference cycles.

use super::{Btf, BtfKind, BtfType, TypeId};

/// How many typedef/modifier/array links a size computation may follow.
const MAX_DEPTH: usize = 64;

impl Btf {
    /// Follows typedefs and modifiers (`const`, `volatile`, `restrict`, type tags) to the
    /// underlying type id.
    pub fn resolve(&self, id: TypeId) -> Result<TypeId, String> {
        let mut cur = id;
        for _ in 0..MAX_DEPTH {
            match &self.get(cur)?.kind {
                BtfKind::Typedef(t)
                | BtfKind::Const(t)
                | BtfKind::Volatile(t)
                | BtfKind::Restrict(t)
                | BtfKind::TypeTag(t) => cur = *t,
                _ => return Ok(cur),
            }
        }
        Err(format!("type {id}: modifier chain too deep or cyclic"))
    }

    /// The size in bytes of a value of type `id`.
    pub fn size_of(&self, id: TypeId) -> Result<u64, String> {
        self.size_at_depth(id, 0)
    }

    fn size_at_depth(&self, id: TypeId, depth: usize) -> Result<u64, String> {
        if depth > MAX_DEPTH {
            return Err(format!("type {id}: type chain too deep or cyclic"));
        }
        let t = self.get(id)?;
        Ok(match &t.kind {
            BtfKind::Int { size, .. }
            | BtfKind::Struct { size, .. }
            | BtfKind::Union { size, .. }
            | BtfKind::Enum { size, .. }
            | BtfKind::Datasec { size, .. }
            | BtfKind::Float { size } => u64::from(*size),
            BtfKind::Ptr(_) => 8,
            BtfKind::Array { elem, nelems, .. } => self
                .size_at_depth(*elem, depth + 1)?
                .checked_mul(u64::from(*nelems))
                .ok_or_else(|| format!("type {id}: array size overflows"))?,
            BtfKind::Typedef(n)
            | BtfKind::Const(n)
            | BtfKind::Volatile(n)
            | BtfKind::Restrict(n)
            | BtfKind::TypeTag(n)
            | BtfKind::Var { ty: n, .. } => self.size_at_depth(*n, depth + 1)?,
            BtfKind::Void
            | BtfKind::Fwd { .. }
            | BtfKind::Func { .. }
            | BtfKind::FuncProto { .. }
            | BtfKind::DeclTag { .. } => {
                return Err(format!("type {id} ({}) has no size", describe(t)));
            }
        })
    }

    fn get(&self, id: TypeId) -> Result<&BtfType, String> {
        self.ty(id)
            .ok_or_else(|| format!("type id {id} out of range ({} types)", self.len()))
    }
}

fn describe(t: &BtfType) -> String {
    let kind = match t.kind {
        BtfKind::Void => "void",
        BtfKind::Fwd { .. } => "forward declaration",
        BtfKind::Func { .. } => "function",
        BtfKind::FuncProto { .. } => "function prototype",
        BtfKind::DeclTag { .. } => "declaration tag",
        _ => "type",
    };
    if t.name.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} {}", t.name)
    }
}
