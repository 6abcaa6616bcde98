//! [`Extension`]: one loaded object (or bare bytecode) with its maps, ready to test-run.

use std::path::Path;
use std::sync::Arc;

use kflex_interp::Limits;
use kflex_isa::Insn;
use kflex_object::{MapSpec, Object, ProgType};
use kflex_runtime::HelperDef;
use kflex_runtime::maps::{MapOptions, MapTable};

use crate::error::{Error, Rejection, Result};
use crate::link::{self, LoadedProgram};
use crate::maps::MapRef;

/// Name given to the single program of an extension built from bare bytecode.
pub const RAW_PROGRAM_NAME: &str = "main";

/// How to load an extension.
#[derive(Clone, Debug, Default)]
pub struct ExtensionOptions {
    /// Number of CPUs per-CPU maps keep a slot for (default: the host's online CPU count).
    pub cpus: Option<u32>,
    /// Host helpers offered to the extension on top of the Linux helpers and the program type's
    /// helpers (ids must not clash with those).
    pub helpers: Vec<HelperDef>,
    /// Interpreter limits (instruction budget, call depth); `None` for the defaults.
    pub limits: Option<Limits>,
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
    /// Loads an ELF object from memory: parses it, creates its maps and links every program.
    /// A program that fails to link or decode does not fail the load; asking for it with
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
    pub fn from_object(object: Object, options: ExtensionOptions) -> Result<Self> {
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
        let programs = object
            .programs
            .iter()
            .map(|p| link::load_object_program(p, &maps))
            .collect();
        let program_names = object.programs.iter().map(|p| p.name.clone()).collect();
        Ok(Extension {
            name: object.name.clone(),
            specs: object.maps.clone(),
            maps: Arc::new(maps),
            programs,
            program_names,
            helpers: options.helpers,
            limits: options.limits.unwrap_or_default(),
            object: Some(object),
        })
    }

    /// Builds an extension from bare bytecode: one program named [`RAW_PROGRAM_NAME`], no maps.
    /// Unlike objects, a program that does not decode fails here.
    pub fn from_raw(
        insns: &[Insn],
        prog_type: Option<ProgType>,
        options: ExtensionOptions,
    ) -> Result<Self> {
        let program =
            link::load_raw_program(RAW_PROGRAM_NAME, insns, prog_type).map_err(Error::Rejected)?;
        let map_opts = MapOptions {
            num_cpus: options.cpus,
            arena_init: None,
        };
        let maps = MapTable::create(&[], &map_opts).map_err(|e| Error::Maps(e.to_string()))?;
        Ok(Extension {
            name: RAW_PROGRAM_NAME.to_string(),
            object: None,
            specs: Vec::new(),
            maps: Arc::new(maps),
            programs: vec![Ok(program)],
            program_names: vec![RAW_PROGRAM_NAME.to_string()],
            helpers: options.helpers,
            limits: options.limits.unwrap_or_default(),
        })
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
    /// the program type's helpers or another host helper; clashes are reported at test-run time).
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
        Ok(())
    }

    /// The interpreter limits used for test-runs.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}
