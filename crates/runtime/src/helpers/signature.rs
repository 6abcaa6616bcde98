//! Typed helper signatures: what each argument must be and what the helper returns.
//!
//! One signature per helper, used by the verifier to check every call statically and by the runtime
//! to check dynamically (interpreter) and to dispatch. This is kflex's version of TAL's typed imports.

/// What kind of host resource an acquired reference stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A reserved ringbuf sample (released by submit or discard).
    RingbufSample,
    /// A spin lock held by the extension.
    Lock,
    /// A host object handed out by a host-registered helper (the host names the kind).
    Host(&'static str),
}

/// What one argument register (r1..r5) must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// Any initialised scalar.
    Scalar,
    /// A scalar that must be a known constant at verification time (flags, sizes).
    ConstScalar,
    /// A pointer to a map (from `lddw` with a map pseudo source).
    MapPtr,
    /// A pointer to `key_size` readable bytes of the map passed in the previous `MapPtr` argument.
    MapKey,
    /// A pointer to `value_size` readable bytes of the map passed in the `MapPtr` argument.
    MapValue,
    /// A pointer to readable memory whose size is the argument with the given index (0-based).
    MemRead {
        /// Index of the `MemSize` argument giving the length.
        size_arg: u8,
    },
    /// A pointer to writable memory (may be uninitialised) whose size is the given argument.
    MemWrite {
        /// Index of the `MemSize` argument giving the length.
        size_arg: u8,
    },
    /// The size of a preceding memory argument (may be zero only if `zero_ok`).
    MemSize {
        /// Whether a zero size is accepted.
        zero_ok: bool,
    },
    /// The program's context pointer.
    Ctx,
    /// An acquired reference of this kind, released or used by the call.
    Ref(ResourceKind),
    /// A pointer to a NUL-terminated constant string in read-only memory.
    ConstStr,
    /// A pointer to a 4-byte `struct bpf_spin_lock` inside a map value or the heap.
    SpinLock,
    /// Anything at all (unused argument slots are simply absent).
    Any,
}

/// What a helper returns in r0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetKind {
    /// A scalar (r0 is unknown but initialised).
    Scalar,
    /// A pointer to a value of the `MapPtr` argument's map, or NULL.
    MapValueOrNull,
    /// A pointer to memory of a size given by an argument (constant at verification), or NULL;
    /// usually an acquired reference (ringbuf reserve).
    MemOrNull {
        /// Index of the argument holding the size.
        size_arg: u8,
    },
    /// Nothing useful (r0 is set to 0).
    Void,
}

/// The typed signature of a helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Argument kinds for r1.. (at most 5).
    pub args: Vec<ArgKind>,
    /// Return kind.
    pub ret: RetKind,
    /// The call acquires a reference of this kind (returned in r0 unless NULL).
    pub acquires: Option<ResourceKind>,
    /// The call releases the reference passed in this argument (0-based).
    pub releases: Option<u8>,
    /// The call may be made while the extension holds a lock.
    pub allowed_under_lock: bool,
}

impl Signature {
    /// A signature with the given arguments and return kind, acquiring and releasing nothing.
    pub fn new(args: &[ArgKind], ret: RetKind) -> Self {
        Signature {
            args: args.to_vec(),
            ret,
            acquires: None,
            releases: None,
            allowed_under_lock: false,
        }
    }

    /// Marks the call as acquiring a reference of `kind`.
    pub fn acquires(mut self, kind: ResourceKind) -> Self {
        self.acquires = Some(kind);
        self
    }

    /// Marks the call as releasing the reference in argument `arg` (0-based).
    pub fn releases(mut self, arg: u8) -> Self {
        self.releases = Some(arg);
        self
    }

    /// Allows the call while a lock is held.
    pub fn under_lock(mut self) -> Self {
        self.allowed_under_lock = true;
        self
    }
}
