//! One module per command; each orchestrates library calls and reports through the printer.

pub mod doctor;
pub mod init;
