//! The rules, one module per kind of instruction or memory.
//!
//! Every check works on one [`State`] at one instruction through a [`Cx`] (the verification
//! input, options, id generator and the facts being collected) and either updates the state or
//! returns the rule that was broken.

pub mod alu;
pub mod branch;
pub mod call;
pub mod ctx;
pub mod exit;
pub mod heap;
pub mod helper;
pub mod mem;
pub mod packet;
pub mod resources;

use crate::error::VerifyError;
use crate::facts::FactsBuilder;
use crate::log::error_at;
use crate::state::{RegState, State};
use crate::{VerifyInput, VerifyOptions};

/// The result of a check: the error is boxed (it is large and rare).
pub type CheckResult<T = ()> = Result<T, Box<VerifyError>>;

/// What the checks share while one program is verified.
pub struct Cx<'a> {
    /// The program and what it refers to.
    pub input: &'a VerifyInput<'a>,
    /// Verification options.
    pub options: &'a VerifyOptions,
    /// Facts collected over every visited state.
    pub facts: FactsBuilder,
    next_id: u32,
}

impl<'a> Cx<'a> {
    /// A context for verifying `input`.
    pub fn new(input: &'a VerifyInput<'a>, options: &'a VerifyOptions) -> Self {
        Cx {
            input,
            options,
            facts: FactsBuilder::new(input.program.len()),
            next_id: 0,
        }
    }

    /// A fresh pointer or reference id (never 0).
    pub fn fresh_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Mutable access to the id counter (for the helper-call adapter).
    pub fn id_counter(&mut self) -> &mut u32 {
        &mut self.next_id
    }

    /// An error at `pc` with the state's text, the rule broken and a hint.
    pub fn error(
        &self,
        pc: usize,
        state: &State,
        rule: impl Into<String>,
        hint: impl Into<String>,
    ) -> Box<VerifyError> {
        Box::new(error_at(
            self.input,
            pc,
            rule,
            hint,
            Some(state.to_string()),
        ))
    }

    /// Register `r` of the innermost frame, which must be initialised.
    pub fn read_reg<'s>(&self, pc: usize, state: &'s State, r: u8) -> CheckResult<&'s RegState> {
        match state.reg(r) {
            RegState::Uninit => Err(self.error(
                pc,
                state,
                format!("R{r} !read_ok: r{r} is not initialised here"),
                crate::hints::uninit_register(r),
            )),
            v => Ok(v),
        }
    }

    /// Rejects writes to r10.
    pub fn check_writable_reg(&self, pc: usize, state: &State, r: u8) -> CheckResult {
        if r == 10 {
            return Err(self.error(
                pc,
                state,
                "frame pointer is read only: r10 cannot be written",
                "copy r10 into another register (`r1 = r10`) and modify the copy",
            ));
        }
        Ok(())
    }
}
