//! What `tpa-ssh` keeps on this machine: its directories, private files, the
//! saved login, the key to certify and its certificate, the optional
//! settings file, the ssh-agent and the ssh_config snippet. No network here.

pub mod agent;
pub mod dirs;
pub mod files;
pub mod keys;
pub mod session;
pub mod settings;
pub mod ssh_config;
