//! Writing a command's result to standard output.
//!
//! Why a module of its own: `println!` panics when standard output is gone,
//! and both binaries print results that scripts pipe on (`| head`, `| jq`)
//! or redirect to files that can fill up. Neither should crash, and a
//! result that could not be written should not pass for success. (A
//! standard output that was closed outright, `>&-`, is not noticed: Rust's
//! standard library treats writes to it as done.)

use std::io::{self, Write};

use crate::shared::exit_code::IO_ERROR;

/// Writes `output` and returns `code`, the command's own result. A reader
/// that went away early (`| head`) is no failure: the exit code still tells
/// the result. Any other failure to write, a full disk say, loses the
/// output, so a run that was otherwise fine ends with [`IO_ERROR`] instead.
pub fn print(program: &str, output: &[u8], code: i32) -> i32 {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(output).and_then(|()| stdout.flush()) {
        Ok(()) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            // Not eprintln!, which would panic if standard error is lost too.
            let _ = writeln!(
                io::stderr(),
                "{program}: cannot write to standard output: {e}"
            );
            if code == 0 { IO_ERROR } else { code }
        }
    }
}
