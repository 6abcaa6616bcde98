//! Test runs (`BPF_PROG_TEST_RUN` through libbpf) of a loaded object's programs.

use std::time::Instant;

use kflex_object::ProgType;
use libbpf_rs::ProgramInput;

use super::error::{BackendError, Result};
use super::extension::{LinuxExtension, op_err};

/// Room beyond the input packet for programs that grow it (`bpf_xdp_adjust_tail` and friends).
const DATA_HEADROOM: usize = 4096;

/// The input of one test run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRunInput<'a> {
    /// Packet bytes (empty for program types without packet data, e.g. `syscall`).
    pub data_in: &'a [u8],
    /// Context bytes (`struct xdp_md`, `struct __sk_buff`, a syscall program's argument
    /// struct), or `None` to let the kernel build a default context.
    pub ctx_in: Option<&'a [u8]>,
    /// Number of runs (0 and 1 both mean once); the kernel reports their mean duration.
    pub repeat: u32,
}

/// What a test run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (`r0`, truncated to 32 bits by the kernel).
    pub retval: u32,
    /// The packet after the run (empty for program types without packet data).
    pub data_out: Vec<u8>,
    /// The context after the run: a syscall program's argument struct as it left it, or a
    /// packet program's context when one was passed in.
    pub ctx_out: Option<Vec<u8>>,
    /// Mean duration of one run in nanoseconds.
    pub duration_ns: u64,
    /// Whether the kernel measured [`duration_ns`](Self::duration_ns) (packet programs). The
    /// kernel does not time `syscall` programs; for them it is this process's wall-clock time
    /// per `BPF_PROG_TEST_RUN` call, system-call cost included.
    pub kernel_timed: bool,
}

impl LinuxExtension {
    /// Runs program `program` with `BPF_PROG_TEST_RUN`.
    ///
    /// A `syscall` program takes no packet and cannot be repeated by the kernel: it runs on a copy
    /// of `ctx_in` (which the kernel writes back, returned as `ctx_out`), `repeat` times in a row
    /// from this process, each run starting from `ctx_in` again.
    pub fn test_run(&self, program: &str, input: &TestRunInput<'_>) -> Result<TestRunOutput> {
        let info = self.program_info(program)?;
        if info.prog_type == Some(ProgType::Syscall) {
            return self.run_syscall_repeated(program, input);
        }
        let prog = self.program(program)?;
        let mut data_out = vec![0u8; input.data_in.len() + DATA_HEADROOM];
        let mut ctx_in = input.ctx_in.map(<[u8]>::to_vec);
        let mut ctx_out = input.ctx_in.map(|c| vec![0u8; c.len()]);
        let has_data = !input.data_in.is_empty();
        let args = ProgramInput {
            data_in: has_data.then_some(input.data_in),
            data_out: has_data.then_some(&mut data_out[..]),
            context_in: ctx_in.as_deref_mut(),
            context_out: ctx_out.as_deref_mut(),
            repeat: input.repeat,
            ..ProgramInput::default()
        };
        let out = prog
            .test_run(args)
            .map_err(|e| op_err(format!("BPF_PROG_TEST_RUN of {program}"), e))?;
        let retval = out.return_value;
        let data_len = out.data.as_ref().map_or(0, |d| d.len());
        let ctx_len = out.context.as_ref().map(|c| c.len());
        let duration_ns = u64::try_from(out.duration.as_nanos()).unwrap_or(u64::MAX);
        data_out.truncate(data_len);
        if let (Some(ctx), Some(len)) = (ctx_out.as_mut(), ctx_len) {
            ctx.truncate(len);
        }
        Ok(TestRunOutput {
            retval,
            data_out,
            ctx_out,
            duration_ns,
            kernel_timed: true,
        })
    }

    /// Runs `syscall` program `program` once on `ctx`, which the kernel updates in place, and
    /// returns its return value: the allocation-free path for drivers that call a program many
    /// times (no packet, no copies beyond the kernel's own).
    pub fn run_syscall(&self, program: &str, ctx: &mut [u8]) -> Result<u32> {
        let prog = self.program(program)?;
        let args = ProgramInput {
            context_in: (!ctx.is_empty()).then_some(ctx),
            ..ProgramInput::default()
        };
        let out = prog
            .test_run(args)
            .map_err(|e| op_err(format!("BPF_PROG_TEST_RUN of {program}"), e))?;
        Ok(out.return_value)
    }

    fn run_syscall_repeated(
        &self,
        program: &str,
        input: &TestRunInput<'_>,
    ) -> Result<TestRunOutput> {
        if !input.data_in.is_empty() {
            return Err(BackendError::Invalid(format!(
                "{program} is a syscall program: it takes a context, not packet data"
            )));
        }
        let ctx_in = input.ctx_in.unwrap_or(&[]);
        let runs = input.repeat.max(1);
        let mut ctx = ctx_in.to_vec();
        let mut retval = 0;
        let start = Instant::now();
        for _ in 0..runs {
            ctx.copy_from_slice(ctx_in);
            retval = self.run_syscall(program, &mut ctx)?;
        }
        let elapsed = start.elapsed().as_nanos() / u128::from(runs);
        Ok(TestRunOutput {
            retval,
            data_out: Vec::new(),
            ctx_out: input.ctx_in.map(|_| ctx),
            duration_ns: u64::try_from(elapsed).unwrap_or(u64::MAX),
            kernel_timed: false,
        })
    }
}
