//! [`Extension`]: one loaded object (or bare bytecode) with its maps, ready to test-run.

use std::path::Path;
use std::sync::Arc;

use kflex_interp::Limits;
use kflex_isa::Insn;
use kflex_jit::HeapLayout;
use kflex_object::{MapSpec, Object, ProgType};
use kflex_runtime::HelperDef;
use kflex_runtime::maps::{MapOptions, MapTable};
use kflex_verify::VerifyOptions;

use crate::engine::{self, Engine, JitConfig};
use crate::error::{Error, Rejection, Result};
use crate::link::{self, LoadedProgram};
use crate::maps::MapRef;

/// Name given to the single program of an extension built from bare bytecode.
pub const RAW_PROGRAM_NAME: &str = "main";

/// How to load an extension.
#[derive(Clone, Debug)]
pub struct ExtensionOptions {
    /// Number of CPUs per-CPU maps keep a slot for (default: the host's online CPU count).
    pub cpus: Option<u32>,
    /// Host helpers offered to the extension on top of the Linux helpers and the program type's
    /// helpers (ids must not clash with those).
    pub helpers: Vec<HelperDef>,
    /// Interpreter limits (instruction budget, call depth); `None` for the defaults.
    pub limits: Option<Limits>,
    /// Verify every program before linking it (default true). A program the verifier rejects is
    /// not loaded: asking for it returns the verifier's [`Rejection`]. Bare bytecode without a
    /// program type is never verified (the rules depend on the type). Set to `false` only to run
    /// programs deliberately unverified (tests of the runtime's own safety nets).
    pub verify: bool,
    /// The engine test-runs use unless [`crate::TestRunOptions::engine`] says otherwise (default:
    /// the JIT on x86-64 Linux, the interpreter elsewhere). Verified programs are compiled by the
    /// JIT at load time whatever this says, so either engine can run them.
    pub engine: Engine,
    /// Size in bytes of the extension heap (the arena map), overriding the object's
    /// `max_entries`; rounded up to whole pages (and by the heap to a power of two).
    pub heap_size: Option<u64>,
    /// How the JIT compiles verified programs (SFI mode, termination checks).
    pub jit: JitConfig,
}

impl Default for ExtensionOptions {
    fn default() -> Self {
        ExtensionOptions {
            cpus: None,
            helpers: Vec::new(),
            limits: None,
            verify: true,
            engine: Engine::default(),
            heap_size: None,
            jit: JitConfig::default(),
        }
    }
}

/// A loaded extension: its object, its maps (created and initialised), and its programs, each
/// linked against those maps and decoded (or the reason it could not be).
pub struct Extension {
    pub(crate) name: String,
    pub(crate) object: Option<Object>,
    pub(crate) specs: Vec<MapSpec>,
    pub(crate) maps: Arc<MapTable>,
    pub(crate) programs: Vec<Result<LoadedProgram, Rejection>>,
    pub(crate) program_names: Vec<String>,
    pub(crate) helpers: Vec<HelperDef>,
    pub(crate) limits: Limits,
    /// Whether programs are verified before linking.
    pub(crate) verify: bool,
    /// The default engine of test-runs.
    pub(crate) engine: Engine,
    /// How verified programs are compiled for the JIT.
    pub(crate) jit_config: JitConfig,
    /// The instructions and type of a bare-bytecode extension (objects keep theirs in `object`).
    pub(crate) raw: Option<(Vec<Insn>, Option<ProgType>)>,
    /// Called after every cancelled (or faulted) invocation ([`Extension::on_cancel`]).
    pub(crate) cancel_hooks: CancelHooks,
}

/// What a cancel hook learns about an invocation that was cancelled (watchdog, injected
/// cancellation, stack overflow, memory fault) or stopped by a fault before it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelInfo {
    /// The program that was running.
    pub program: String,
    /// The CPU id it ran as (`ExecEnv::cpu`; the SDK's per-CPU state is indexed by it).
    pub cpu: u32,
    /// Why it stopped.
    pub reason: String,
}

/// A host callback run after a cancelled invocation.
pub type CancelHook = Arc<dyn Fn(&CancelInfo) + Send + Sync>;

/// The cancel hooks of an extension (cheap to clone, so run paths can keep a copy).
#[derive(Clone, Default)]
pub struct CancelHooks(Vec<CancelHook>);

impl CancelHooks {
    /// Runs every hook for a stopped invocation of `program` on `cpu`: the one call each run
    /// path makes after a cancellation (after the runtime released its own resources).
    pub fn notify(&self, program: &str, cpu: u32, reason: &str) {
        if self.0.is_empty() {
            return;
        }
        let info = CancelInfo {
            program: program.to_string(),
            cpu,
            reason: reason.to_string(),
        };
        for hook in &self.0 {
            hook(&info);
        }
    }

    /// Number of hooks registered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if no hook is registered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for CancelHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CancelHooks({})", self.0.len())
    }
}

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension")
            .field("name", &self.name)
            .field("programs", &self.program_names)
            .field(
                "maps",
                &self.specs.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Extension {
    /// Loads an ELF object from memory: parses it, creates its maps, verifies (unless
    /// [`ExtensionOptions::verify`] is off) and links every program. A program that the verifier
    /// rejects or that fails to link or decode does not fail the load; asking for it with
    /// [`Extension::program`] returns the rejection.
    pub fn load(name: &str, bytes: &[u8], options: ExtensionOptions) -> Result<Self> {
        let object = Object::parse(name, bytes)?;
        Self::from_object(object, options)
    }

    /// Loads an ELF object from a file (the extension is named after the file).
    pub fn load_file(path: impl AsRef<Path>, options: ExtensionOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::load(&name, &bytes, options)
    }

    /// Builds an extension from an already parsed object.
    pub fn from_object(mut object: Object, options: ExtensionOptions) -> Result<Self> {
        if let Some(size) = options.heap_size {
            set_heap_size(&mut object.maps, size)?;
        }
        let map_opts = MapOptions {
            num_cpus: options.cpus,
            arena_init: object
                .maps
                .iter()
                .find(|m| m.map_type == kflex_object::MapType::Arena)
                .and_then(|m| m.initial_value.clone()),
        };
        let maps =
            MapTable::create(&object.maps, &map_opts).map_err(|e| Error::Maps(e.to_string()))?;
        let program_names = object.programs.iter().map(|p| p.name.clone()).collect();
        let mut ext = Extension {
            name: object.name.clone(),
            specs: object.maps.clone(),
            maps: Arc::new(maps),
            programs: Vec::new(),
            program_names,
            helpers: options.helpers,
            limits: options.limits.unwrap_or_default(),
            object: Some(object),
            verify: options.verify,
            engine: options.engine,
            jit_config: options.jit,
            raw: None,
            cancel_hooks: CancelHooks::default(),
        };
        ext.programs = (0..ext.program_names.len())
            .map(|i| ext.build_program(i))
            .collect::<Result<_>>()?;
        Ok(ext)
    }

    /// Builds an extension from bare bytecode: one program named [`RAW_PROGRAM_NAME`], no maps.
    /// Unlike objects, a program that does not decode fails here; one the verifier rejects (when
    /// `prog_type` is given and verification is on) loads, and asking for it returns the
    /// rejection, as for objects.
    pub fn from_raw(
        insns: &[Insn],
        prog_type: Option<ProgType>,
        options: ExtensionOptions,
    ) -> Result<Self> {
        // Malformed bytecode fails the load whether or not it is verified.
        link::load_raw_program(RAW_PROGRAM_NAME, insns, prog_type).map_err(Error::Rejected)?;
        let map_opts = MapOptions {
            num_cpus: options.cpus,
            arena_init: None,
        };
        let maps = MapTable::create(&[], &map_opts).map_err(|e| Error::Maps(e.to_string()))?;
        let mut ext = Extension {
            name: RAW_PROGRAM_NAME.to_string(),
            object: None,
            specs: Vec::new(),
            maps: Arc::new(maps),
            programs: Vec::new(),
            program_names: vec![RAW_PROGRAM_NAME.to_string()],
            helpers: options.helpers,
            limits: options.limits.unwrap_or_default(),
            verify: options.verify,
            engine: options.engine,
            jit_config: options.jit,
            raw: Some((insns.to_vec(), prog_type)),
            cancel_hooks: CancelHooks::default(),
        };
        ext.programs = vec![ext.build_program(0)?];
        Ok(ext)
    }

    /// Verifies (when enabled and the program type is known), links and decodes program `index`.
    /// The outer error is a load failure (a host helper clashing with a built-in one); the inner
    /// one the program's rejection.
    fn build_program(&self, index: usize) -> Result<Result<LoadedProgram, Rejection>> {
        let missing = || Error::NoSuchProgram {
            name: format!("#{index}"),
            available: self.program_names.clone(),
        };
        let (name, insns, prog_type, meta) = match (&self.object, &self.raw) {
            (Some(object), _) => {
                let p = object.programs.get(index).ok_or_else(missing)?;
                (p.name.as_str(), p.insns.as_slice(), p.prog_type, Some(p))
            }
            (None, Some((insns, prog_type))) => {
                (RAW_PROGRAM_NAME, insns.as_slice(), *prog_type, None)
            }
            (None, None) => return Err(missing()),
        };
        let verified = match prog_type.filter(|_| self.verify) {
            Some(ty) => {
                let helpers = link::helper_registry(ty, &self.helpers)?;
                let options = VerifyOptions::default();
                let cx = link::VerifyContext {
                    maps: &self.specs,
                    helpers: &helpers,
                    options: &options,
                };
                match link::verify_program(name, insns, ty, meta, &cx) {
                    Ok(v) => Some(v),
                    Err(r) => return Ok(Err(r)),
                }
            }
            None => None,
        };
        let loaded = match meta {
            Some(meta) => link::load_object_program(meta, &self.maps),
            None => link::load_raw_program(name, insns, prog_type),
        };
        Ok(loaded.map(|mut p| {
            if let (true, Some(v)) = (Engine::JIT_SUPPORTED, &verified) {
                p.jit = Some(engine::compile(
                    &p.code,
                    v,
                    self.heap_layout(),
                    Some(&self.maps),
                    self.jit_config,
                ));
            }
            p.verified = verified;
            p
        }))
    }

    /// The extension's name (the object's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed object, unless the extension was built from bare bytecode.
    pub fn object(&self) -> Option<&Object> {
        self.object.as_ref()
    }

    /// Names of every program, in object order.
    pub fn program_names(&self) -> &[String] {
        &self.program_names
    }

    /// A loaded program by name, or why it could not be loaded.
    pub fn program(&self, name: &str) -> Result<&LoadedProgram> {
        let idx = self
            .program_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::NoSuchProgram {
                name: name.to_string(),
                available: self.program_names.clone(),
            })?;
        match &self.programs[idx] {
            Ok(p) => Ok(p),
            Err(r) => Err(Error::Rejected(r.clone())),
        }
    }

    /// Every program, loaded or rejected, in object order.
    pub fn programs(&self) -> impl Iterator<Item = Result<&LoadedProgram, &Rejection>> {
        self.programs.iter().map(|p| p.as_ref())
    }

    /// The map table shared by every program of the extension.
    pub fn map_table(&self) -> &Arc<MapTable> {
        &self.maps
    }

    /// The map specifications, in map-index order.
    pub fn map_specs(&self) -> &[MapSpec] {
        &self.specs
    }

    /// Host access to a map by name.
    pub fn map(&self, name: &str) -> Result<MapRef<'_>> {
        let index = self
            .specs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Error::NoSuchMap {
                name: name.to_string(),
                available: self.specs.iter().map(|s| s.name.clone()).collect(),
            })?;
        Ok(MapRef::new(self, index))
    }

    /// Host access to every map, in index order.
    pub fn maps(&self) -> impl Iterator<Item = MapRef<'_>> {
        (0..self.specs.len()).map(|i| MapRef::new(self, i))
    }

    /// Registers a host helper for later test-runs (its id must not clash with the Linux helpers,
    /// the program type's helpers or another host helper). Programs the verifier rejected are
    /// verified again, since they may call this helper; a clash with a built-in helper is then
    /// reported here (and the helper is not registered), otherwise at test-run time.
    pub fn register_helper(&mut self, helper: HelperDef) -> Result<()> {
        if let Some(existing) = self.helpers.iter().find(|h| h.id == helper.id) {
            return Err(Error::Helper(
                kflex_runtime::helpers::RegistryError::Duplicate {
                    id: helper.id,
                    existing: existing.name.clone(),
                },
            ));
        }
        self.helpers.push(helper);
        if !self.verify {
            return Ok(());
        }
        let mut rebuilt = Vec::new();
        for (i, p) in self.programs.iter().enumerate() {
            if p.is_err() {
                match self.build_program(i) {
                    Ok(p) => rebuilt.push((i, p)),
                    Err(e) => {
                        // Keep the extension as it was.
                        self.helpers.pop();
                        return Err(e);
                    }
                }
            }
        }
        for (i, p) in rebuilt {
            if let Some(slot) = self.programs.get_mut(i) {
                *slot = p;
            }
        }
        Ok(())
    }

    /// Whether programs are verified before linking ([`ExtensionOptions::verify`]).
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// The extension heap (its arena map): base and size, if it has one.
    pub fn heap_layout(&self) -> Option<HeapLayout> {
        let index = self
            .specs
            .iter()
            .position(|m| m.map_type == kflex_object::MapType::Arena)?;
        let (base, size) = self.maps.heap(index).ok()?;
        Some(HeapLayout { base, size })
    }

    /// The engine test-runs use by default ([`ExtensionOptions::engine`]).
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The interpreter limits used for test-runs.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Registers `hook` to run after every invocation of this extension's programs that was
    /// cancelled or stopped by a fault, once the runtime has released the resources it tracks:
    /// the place for host-side cleanup of state the runtime does not know, e.g.
    /// `kflex_sdk::HeapAllocator::release_after_cancel(info.cpu)` for heap locks and in-flight
    /// allocations. Hooks run on the thread that ran the invocation, in registration order.
    pub fn on_cancel(&mut self, hook: impl Fn(&CancelInfo) + Send + Sync + 'static) {
        self.cancel_hooks.0.push(Arc::new(hook));
    }

    /// The registered cancel hooks.
    pub fn cancel_hooks(&self) -> &CancelHooks {
        &self.cancel_hooks
    }

    /// Recompiles verified program `program` for the JIT with `config` instead of the
    /// extension's (e.g. [`JitConfig::inject_cancel_at`] in tests); maps, heap and the other
    /// programs are unchanged. An error if the program is not loaded or was not verified.
    pub fn recompile(&mut self, program: &str, config: JitConfig) -> Result<()> {
        let heap = self.heap_layout();
        let index = self
            .program_names
            .iter()
            .position(|n| n == program)
            .ok_or_else(|| Error::Input(format!("no program named {program:?}")))?;
        let Some(Ok(p)) = self.programs.get_mut(index) else {
            return Err(Error::Input(format!("program {program:?} is not loaded")));
        };
        let Some(verified) = &p.verified else {
            return Err(Error::Input(format!(
                "program {program:?} was not verified, so the JIT does not run it"
            )));
        };
        if Engine::JIT_SUPPORTED {
            p.jit = Some(engine::compile(
                &p.code,
                verified,
                heap,
                Some(&self.maps),
                config,
            ));
        }
        Ok(())
    }
}

/// Sets the arena map's size to `size` bytes (whole pages); an error if there is no arena map or
/// the size is zero or too large.
fn set_heap_size(maps: &mut [MapSpec], size: u64) -> Result<()> {
    let arena = maps
        .iter_mut()
        .find(|m| m.map_type == kflex_object::MapType::Arena)
        .ok_or_else(|| {
            Error::Input("a heap size was given but the object has no arena map".into())
        })?;
    let page = kflex_runtime::maps::page_size().max(1);
    let pages = size.div_ceil(page);
    arena.max_entries = u32::try_from(pages)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| Error::Input(format!("heap size {size} is out of range")))?;
    Ok(())
}
